"""Shared by the runtime benchmarks: a seeded ResNet-50 checkpoint and the servers as processes.

The servers run exactly as a user runs them (`privpart serve`, `privpart enclave`), each in its
own process on loopback, so the measured path includes real HTTP, pipes and process switches.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import torch

from privpart.models import ModelSpec, build_model
from privpart.runtime.openmp_spin import idle_spin_env
from privpart.training import save_checkpoint

CLI = [sys.executable, "-c", "from privpart.cli import main; main()"]


def rerun_with_quiet_openmp() -> None:
    """Re-run this script with privpart's OpenMP idle-spin setting in its environment (as the
    runtime commands run), unless it is there already or the user chose their own: libgomp
    reads it once, when torch loads, so it cannot be set from inside a running process."""
    extra = idle_spin_env()
    if extra:
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **extra})


def stop_session(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM lets a server drain; SIGKILL to its whole session is the fallback."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def parse_cpus(text: str) -> set[int]:
    """A CPU list as taskset writes it ("0-3,6") -> {0, 1, 2, 3, 6}; only CPUs this process may
    use are accepted, so a typo fails here and not as a silently unpinned server."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise SystemExit(f"bad CPU list {text!r}: write it like 0-3,6") from None
    allowed = os.sched_getaffinity(0)
    if not cpus or not cpus <= allowed:
        raise SystemExit(f"CPU list {text!r} is not within this process's CPUs {sorted(allowed)}")
    return cpus


def pin_to(cpus: set[int] | None) -> Callable[[], None] | None:
    """A `preexec_fn` that puts a child on `cpus` before it starts any thread (all inherit)."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def resnet50_checkpoint(folder: Path, size: int = 224, classes: int = 1000) -> Path:
    """A seeded, untrained ResNet-50 (timing does not depend on the weights' values)."""
    if (folder / "meta.json").is_file():
        return folder
    torch.manual_seed(0)
    spec = ModelSpec("resnet50", 3, classes, (size, size))
    meta = {"input_shape": [3, size, size], "classes": [str(i) for i in range(classes)]}
    return save_checkpoint(folder, build_model(spec).eval(), spec, meta)


class Server:
    """A `privpart serve|enclave` process; stops with SIGTERM (graceful) or SIGKILL."""

    def __init__(
        self,
        args: list[str],
        port: int,
        log: Path,
        command: list[str] | None = None,
        cpus: set[int] | None = None,
    ) -> None:
        self.args, self.url, self.log = args, f"http://127.0.0.1:{port}", log
        self.command = command or CLI  # another server program, e.g. a bench's own variant
        self.cpus = cpus  # None: the scheduler places it anywhere
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 300.0) -> Server:
        fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            [*self.command, *self.args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=pin_to(self.cpus),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.args[0]} exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"{self.args[0]} did not start:\n{self.log.read_text()[-3000:]}")

    def info(self) -> dict:
        with urllib.request.urlopen(self.url + "/v1/info", timeout=5) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.proc is not None:
            stop_session(self.proc, 60)
