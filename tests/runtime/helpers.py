"""Test plumbing for the runtime: an event loop in a thread, servers in subprocesses, raw HTTP."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-c", "from privpart.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoopThread:
    """An asyncio loop running in a daemon thread, for servers that sync tests talk to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine, timeout: float = 180.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class RawHttp:
    """Keep-alive HTTP/1.1 with http.client; reconnects when the server closed the connection."""

    def __init__(self, url: str, timeout: float = 20.0, source: str | None = None) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port, self.timeout = host, int(port), timeout
        self.source = (source, 0) if source else None  # e.g. 127.0.0.2: another client address
        self.conn: http.client.HTTPConnection | None = None
        self.reconnects = 0

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes, dict[str, str]]:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(
                    self.host, self.port, timeout=self.timeout, source_address=self.source
                )
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, data, dict(resp.getheaders())
            except (ConnectionError, http.client.RemoteDisconnected, BrokenPipeError):
                self.close()
                self.reconnects += 1
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def get_json(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


class ServerProcess:
    """A `privpart serve|enclave` subprocess; logs go to a file the test can show on failure."""

    def __init__(self, args: list[str], url: str, log: Path) -> None:
        self.args, self.url, self.log = args, url, log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> ServerProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            [*CLI, *self.args], stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log_text()}")
            try:
                if get_json(self.url + "/healthz", 1.0)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"server did not become healthy:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL the whole process group (the server and any worker it started)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def simulated_policy(pin: bytes):  # noqa: ANN201
    """What a test client of the process backend states: simulated allowed, platform pinned."""
    from privpart.runtime.channel.policy import VerificationPolicy

    return VerificationPolicy(allow_simulated=True, platform_pins=(pin,))


def slow_body(
    url: str, path: str, declared: int, sent: bytes, headers: dict[str, str] | None = None
) -> socket.socket:
    """A client that declares a body of `declared` bytes and sends only `sent`, then stalls."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {declared}\r\n"
        f"Content-Type: application/octet-stream\r\n{extra}\r\n"
    )
    sock.sendall(head.encode() + sent)
    return sock


def read_reply(sock: socket.socket) -> tuple[int, dict]:
    """The status and JSON body of the one answer on a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length and (chunk := sock.recv(65536)):
        body += chunk
    sock.close()
    return int(head.split()[1]), json.loads(body or b"{}")


def flood(url: str, sources: list[str], per_source: int, head: bytes = b"") -> list[socket.socket]:
    """`per_source` connections from each loopback address in `sources` (127.0.0.2, ...: Linux
    routes all of 127.0.0.0/8 to lo) that send `head` (a request head left unfinished, or
    nothing) and then stay silent: the idle/slow-drip attacker."""
    host, port = url.split("://")[-1].split(":")
    socks = []
    for source in sources:
        for _ in range(per_source):
            sock = socket.create_connection(
                (host, int(port)), timeout=10, source_address=(source, 0)
            )
            if head:
                sock.sendall(head)
            socks.append(sock)
    return socks


def closed_by_server(sock: socket.socket, within: float) -> tuple[bool, bytes]:
    """Whether the server closed `sock` within `within` seconds, and what it sent first."""
    sock.settimeout(within)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
        return True, data
    except ConnectionResetError:
        return True, data
    except TimeoutError:
        return False, data


def loopback_sources(n: int, first: int = 2) -> list[str]:
    return [f"127.0.0.{i}" for i in range(first, first + n)]
