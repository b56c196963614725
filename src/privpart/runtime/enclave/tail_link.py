"""The worker's own link to the tail server: blocking HTTP/1.1 with keep-alive, one connection
per thread, so features go from the enclave straight to the tail (no detour through the host's
pipe) and the worker's main thread keeps running heads while answers are awaited.

Failures become `RuntimeFailure`s named `tail_*` with the status the enclave host answers:
unreachable 502, closed connection 502, timeout 504, and the tail's own errors passed through
(429 busy and 503 draining keep their status so clients can back off).
"""

from __future__ import annotations

import http.client
import json
import queue
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from privpart.runtime.errors import RuntimeFailure
from privpart.runtime.frames import MEDIA_TYPE
from privpart.runtime.timing import parse_server_timing

PASS_THROUGH = (429, 503, 504)


def _target(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise RuntimeFailure(
            "tail_bad_url",
            f"tail URL {url!r} is not http://HOST:PORT",
            "start the enclave with --tail http://HOST:PORT",
            status=500,
        )
    return parts.hostname, parts.port or 80


class TailLink:
    """POST feature frames to a tail server; connections are per thread and per tail."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._local = threading.local()

    def _conn(self, target: tuple[str, int]) -> tuple[http.client.HTTPConnection, bool]:
        conns = self._local.__dict__.setdefault("conns", {})
        if target in conns:
            return conns[target], True
        conns[target] = http.client.HTTPConnection(*target, timeout=self.timeout)
        return conns[target], False

    def _drop(self, target: tuple[str, int]) -> None:
        conn = self._local.__dict__.get("conns", {}).pop(target, None)
        if conn is not None:
            conn.close()

    def post(self, url: str, frame: bytes) -> tuple[bytes, dict[str, float]]:
        """The tail's logits frame for `frame`, and its Server-Timing."""
        target = _target(url)
        for attempt in range(2):
            conn, reused = self._conn(target)
            try:
                conn.request("POST", "/v1/infer", body=frame, headers={"Content-Type": MEDIA_TYPE})
                resp = conn.getresponse()
                body = resp.read()
                break
            except TimeoutError:
                self._drop(target)
                raise RuntimeFailure(
                    "tail_timeout",
                    f"tail {url} did not answer in {self.timeout:g} s",
                    "the tail is overloaded or stuck",
                    status=504,
                ) from None
            except ConnectionRefusedError:
                self._drop(target)
                raise RuntimeFailure(
                    "tail_unreachable",
                    f"cannot connect to the tail at {url}",
                    "check that the tail server is running",
                    status=502,
                ) from None
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                self._drop(target)
                if reused and attempt == 0:  # a keep-alive connection the tail closed: retry
                    continue
                raise RuntimeFailure(
                    "tail_disconnected",
                    f"tail {url} closed the connection ({type(exc).__name__})",
                    "the tail may be restarting; retry",
                    status=502,
                ) from None
        if resp.status >= 400:
            try:
                err = json.loads(body)
                code, message, hint = err["error"], err["message"], err.get("hint", "")
            except (ValueError, KeyError, TypeError):
                code, message, hint = (
                    f"http_{resp.status}",
                    body[:200].decode("utf-8", "replace"),
                    "",
                )
            status = resp.status if resp.status in PASS_THROUGH else 502
            raise RuntimeFailure(f"tail_{code}", f"tail server failed: {message}", hint, status)
        return body, parse_server_timing(resp.getheader("Server-Timing"))


class TailPool:
    """A few threads that run tail round trips; started before the memory budget applies."""

    def __init__(self, threads: int, run: Callable[[object], None]) -> None:
        self.jobs: queue.Queue = queue.Queue()
        self.run = run
        previous = threading.stack_size(1 << 20)  # 1 MiB stacks: reserved address space
        try:
            self.threads = [
                threading.Thread(target=self._loop, name=f"tail-{i}", daemon=True)
                for i in range(threads)
            ]
            for t in self.threads:
                t.start()
        finally:
            threading.stack_size(previous)

    def _loop(self) -> None:
        while True:
            self.run(self.jobs.get())

    def submit(self, job: object) -> None:
        self.jobs.put(job)
