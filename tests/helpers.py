"""Tiny on-disk data made by the tests themselves (no downloads)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np

from privpart.data.idx import write_idx
from privpart.data.tabular import TON_IOT_NETWORK_COLUMNS


def synthetic_images(n: int, seed: int, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Class k: a bright block at a class-specific place, plus noise (easy to learn)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 40, (n, size, size)).astype(np.uint8)
    for i, k in enumerate(labels):
        r, c = 2 + (k // 5) * 12 + rng.integers(0, 3), 1 + (k % 5) * 5 + rng.integers(0, 2)
        images[i, r : r + 10, c : c + 6] = 200 + rng.integers(0, 55)
    return images, labels


def make_idx_dir(folder: Path, n_train: int = 300, n_test: int = 120, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        images, labels = synthetic_images(n, seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)
    return folder


TON_COLUMNS = list(TON_IOT_NETWORK_COLUMNS)
TON_TYPES = ["normal", "ddos", "scanning", "password"]


def make_ton_iot_csv(path: Path, n: int = 400, seed: int = 0) -> Path:
    """A TON_IoT-network-schema CSV whose flows depend on the attack type (so it is learnable)."""
    rnd = random.Random(seed)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(TON_COLUMNS)
        for i in range(n):
            t = rnd.randrange(len(TON_TYPES))
            proto = ["tcp", "udp", "icmp"][(t + rnd.randrange(2)) % 3]
            row = {c: "-" for c in TON_COLUMNS}
            row.update(
                ts=str(1556000000 + i),
                src_ip=f"192.168.1.{rnd.randrange(255)}",
                dst_ip=f"10.0.0.{rnd.randrange(255)}",
                src_port=str(rnd.randrange(1024, 65535)),
                dst_port=str([80, 443, 53, 22][t]),
                proto=proto,
                service=["http", "ssl", "dns", "-"][t],
                duration=f"{rnd.expovariate(1 + t):.4f}",
                src_bytes=str(int(rnd.expovariate(1e-3 * (t + 1)))),
                dst_bytes=str(int(rnd.expovariate(1e-3))),
                conn_state=["SF", "S0", "REJ", "SF"][t],
                missed_bytes="0",
                src_pkts=str(rnd.randrange(1, 10 * (t + 1))),
                src_ip_bytes=str(rnd.randrange(40, 4000)),
                dst_pkts=str(rnd.randrange(0, 20)),
                dst_ip_bytes=str(rnd.randrange(0, 4000)),
                dns_qclass=str(t % 2),
                dns_qtype=str(t),
                dns_rcode="0",
                dns_AA="F",
                dns_RD="T",
                dns_RA="F",
                dns_rejected="F",
                ssl_version="TLSv12" if t == 1 else "-",
                ssl_resumed="F",
                ssl_established="T" if t == 1 else "F",
                http_trans_depth="1",
                http_method="GET" if t == 0 else "-",
                http_version="1.1",
                http_request_body_len=str(rnd.randrange(0, 500)),
                http_response_body_len=str(rnd.randrange(0, 5000)),
                http_status_code=str([200, 0, 0, 401][t]),
                label="0" if t == 0 else "1",
                type=TON_TYPES[t],
            )
            w.writerow([row[c] for c in TON_COLUMNS])
    return path


USER_MODEL_FILE = """
from pathlib import Path

from privpart.models import ModelSpec, build_model

Path(__file__).with_name("ran.marker").touch()  # what a hostile file could do instead


def build(in_channels=1, num_classes=10):
    return build_model(ModelSpec("tinycnn", in_channels, num_classes, {size}))
"""


def code_checkpoint(base: Path, folder: Path) -> Path:
    """A copy of checkpoint `base` (a tinycnn) whose meta.json names its architecture as
    `folder/net.py:build`, a file that writes `folder/ran.marker` when it is imported: the
    marker says the checkpoint's code ran."""
    import json
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    ckpt = folder / "ckpt"
    shutil.copytree(base, ckpt)
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["spec"]["arch"] == "tinycnn"
    size = tuple(meta["spec"]["input_size"])
    (folder / "net.py").write_text(USER_MODEL_FILE.format(size=size))
    meta["spec"]["arch"] = f"{(folder / 'net.py').resolve()}:build"
    (ckpt / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return ckpt


def code_marker(ckpt: Path) -> Path:
    """The file `code_checkpoint`'s model file writes when it runs."""
    return ckpt.parent / "ran.marker"
