"""`privpart enclave --tls-cert/--tls-key` and `privpart infer --enclave https://...
--enclave-cert FILE` as processes: served over TLS with the host's certificate pinned; another
certificate is refused with exit 2 before anything is sent."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from tests.runtime.conftest import CUT
from tests.runtime.helpers import CLI, free_port
from tests.runtime.test_tls import self_signed


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=180, env={**os.environ}
    )


def wait_healthy(url: str, cert: Path, proc: subprocess.Popen, log: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1, context=ctx) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(log.read_text()[-3000:])


def test_infer_through_a_tls_enclave_host_with_its_certificate_pinned(
    process_stack: SimpleNamespace, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path, "enclave-host")
    impostor, _ = self_signed(tmp_path, "impostor")
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(image)
    port = free_port()
    platform = tmp_path / "platform"
    log = tmp_path / "enclave.log"
    proc = subprocess.Popen(
        [
            *CLI,
            "enclave",
            "--checkpoint",
            str(process_stack.checkpoint),
            "--cut",
            CUT,
            "--tail",
            process_stack.tail_url,
            "--port",
            str(port),
            "--platform-dir",
            str(platform),
            "--threads",
            "1",
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"https://127.0.0.1:{port}"
    try:
        wait_healthy(url, cert, proc, log)
        common = [
            "infer",
            str(image),
            "--enclave",
            url,
            "--allow-simulated",
            "--pin",
            str(platform / "platform.pub"),
            "--checkpoint",
            str(process_stack.checkpoint),
            "--cut",
            CUT,
            "--json",
        ]
        ok = run_cli(*common, "--enclave-cert", str(cert))
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["results"][0]["prediction"].startswith("class")
        assert "plain HTTP" not in ok.stderr
        bad = run_cli(*common, "--enclave-cert", str(impostor))
        assert bad.returncode == 2 and "other than the pinned one" in bad.stderr
        assert "Traceback" not in bad.stderr
    finally:
        proc.terminate()
        proc.wait(30)
    assert "https://127.0.0.1" in log.read_text()
