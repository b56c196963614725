"""Channel encryption throughput on feature-sized buffers (AES-256-GCM record layer).

For each size, times `Session.seal` (encrypt + framing) and `Session.open` (sequence check +
decrypt + authenticate) on one core, and the bare `AESGCM` primitive for reference, and reports
GB/s (10^9 bytes per second of plaintext). Sizes: a 64 KiB buffer, the tiny CNN's block2
features, a ResNet-50 @224 input, and ResNet-50 features at layer3/layer2/layer1.

Run: flock /tmp/privpart-cpu.lock .venv/bin/python bench/channel_throughput.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from _common import machine, write
from privpart.runtime.channel.handshake import C2S, S2C
from privpart.runtime.channel.session import Session

SIZES = {
    "64 KiB buffer": 64 << 10,
    "tinycnn block2 features (32x14x14 f32)": 32 * 14 * 14 * 4,
    "ResNet-50 input (3x224x224 f32)": 3 * 224 * 224 * 4,
    "ResNet-50 layer3 features (1024x14x14 f32)": 1024 * 14 * 14 * 4,
    "ResNet-50 layer2 features (512x28x28 f32)": 512 * 28 * 28 * 4,
    "ResNet-50 layer1 features (256x56x56 f32)": 256 * 56 * 56 * 4,
}


def pair() -> tuple[Session, Session]:
    k1, k2, iv1, iv2 = os.urandom(32), os.urandom(32), os.urandom(12), os.urandom(12)
    sender = Session("bench" * 6 + "00", (k1, iv1, C2S), (k2, iv2, S2C))
    receiver = Session("bench" * 6 + "00", (k2, iv2, S2C), (k1, iv1, C2S))
    return sender, receiver


def timed(fn: Callable[[], object], calls: int) -> float:
    """Seconds per call, median over 5 batches of `calls`."""
    per_call = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        per_call.append((time.perf_counter() - t) / calls)
    return statistics.median(per_call)


def measure_size(name: str, size: int, budget_s: float) -> dict:
    data = os.urandom(size)
    aead, nonce = AESGCM(os.urandom(32)), os.urandom(12)
    calls = max(3, int(budget_s / 5 / max(size / 1.5e9, 1e-6)))  # about budget_s per operation
    sender, receiver = pair()
    seal_s = timed(lambda: sender.seal(data), calls)
    sender, receiver = pair()
    records = iter([sender.seal(data) for _ in range(5 * calls)])
    open_s = timed(lambda: receiver.open(next(records)), calls)
    ct = aead.encrypt(nonce, data, b"aad")
    enc_s = timed(lambda: aead.encrypt(nonce, data, b"aad"), calls)
    dec_s = timed(lambda: aead.decrypt(nonce, ct, b"aad"), calls)
    gbps = {
        k: round(size / v / 1e9, 2)
        for k, v in (
            ("seal_gbps", seal_s),
            ("open_gbps", open_s),
            ("aesgcm_encrypt_gbps", enc_s),
            ("aesgcm_decrypt_gbps", dec_s),
        )
    }
    return {
        "buffer": name,
        "bytes": size,
        **gbps,
        "seal_ms": round(seal_s * 1e3, 3),
        "open_ms": round(open_s * 1e3, 3),
    }


def measure(seconds: float) -> dict:
    rows = []
    for name, size in SIZES.items():
        rows.append(measure_size(name, size, seconds))
        print(rows[-1], flush=True)
    return {"cipher": "AES-256-GCM (cryptography/OpenSSL)", "machine": machine(), "rows": rows}


def markdown(r: dict) -> str:
    lines = "\n".join(
        f"| {x['buffer']} | {x['bytes']:,} | {x['seal_gbps']:.2f} | {x['open_gbps']:.2f} | "
        f"{x['aesgcm_encrypt_gbps']:.2f} | {x['aesgcm_decrypt_gbps']:.2f} | {x['seal_ms']:.3f} |"
        for x in r["rows"]
    )
    return f"""# Channel encryption throughput ({r["cipher"]}, one core)

{r["machine"]["cpu"]}. GB/s = 10^9 plaintext bytes per second; seal/open are privpart's record
layer (sequence number, nonce, associated data, and for open the replay/order check); the bare
AESGCM columns are the primitive alone.

| buffer | bytes | seal GB/s | open GB/s | AESGCM enc GB/s | AESGCM dec GB/s | seal ms |
|---|---:|---:|---:|---:|---:|---:|
{lines}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="per size and operation")
    args = ap.parse_args()
    result = measure(args.seconds)
    write("runtime_channel", result, markdown(result))


if __name__ == "__main__":
    main()
