"""The worker's own link to the tail server: blocking HTTP/1.1 with keep-alive, or the tail's
stream transport for a `tcp://` or `tls://` URL (`runtime/stream`). One connection per thread,
so features go from the enclave straight to the tail (no detour through the host's pipe) and
the worker's main thread keeps running heads while answers are awaited.

Failures become `RuntimeFailure`s named `tail_*` with the status the enclave host answers:
unreachable 502, closed connection 502, timeout 504, a TLS peer without the pinned certificate
502 (`tail_tls`), and the tail's own errors passed through (429 busy and 503 draining keep their
status so clients can back off).

TLS: with a pin (the SHA-256 of the tail's certificate, fixed in the worker's arguments and so,
under Gramine, in MRENCLAVE) the worker talks only `https://` and only to a server presenting
exactly that certificate, so the host on the path can neither read nor alter features and
logits. Without a pin, `https://` URLs are verified against the system's CAs.
"""

from __future__ import annotations

import http.client
import queue
import ssl
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from privpart.runtime import protocol
from privpart.runtime.errors import RuntimeFailure
from privpart.runtime.stream import wire
from privpart.runtime.stream.blocking import BlockingStream
from privpart.runtime.tls import presents_pin

PASS_THROUGH = (429, 503, 504)
Target = tuple[str, str, int]
Part = bytes | bytearray | memoryview
R = TypeVar("R")


def _target(url: str, pinned: bool) -> Target:
    parts = urlsplit(url)
    schemes = ("https", "tls") if pinned else ("http", "https", "tcp", "tls")
    stream = parts.scheme in wire.SCHEMES
    if parts.scheme not in schemes or not parts.hostname or (stream and parts.port is None):
        what = (
            "https://HOST:PORT or tls://HOST:PORT (the tail's certificate is pinned)"
            if pinned
            else "http(s)://HOST:PORT, or tcp:// or tls://HOST:PORT for its stream port"
        )
        raise RuntimeFailure(
            "tail_bad_url",
            f"tail URL {url!r} is not {what}",
            f"start the enclave with --tail {what.split(' ')[0]}",
        )
    return parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)  # type: ignore[return-value]


class TailLink:
    """POST feature frames to a tail server; connections are per thread and per tail."""

    def __init__(self, timeout: float = 60.0, pin: bytes = b"") -> None:
        self.timeout = timeout
        self.pin = pin
        self._local = threading.local()
        if pin:  # the pin is the trust anchor: no CA, no host name, exactly this certificate
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            self._tls.check_hostname = False
            self._tls.verify_mode = ssl.CERT_NONE
        else:
            self._tls = ssl.create_default_context()

    def _open(self, target: Target) -> http.client.HTTPConnection:
        scheme, host, port = target
        if scheme == "http":
            return http.client.HTTPConnection(host, port, timeout=self.timeout)
        conn = http.client.HTTPSConnection(host, port, timeout=self.timeout, context=self._tls)
        try:
            conn.connect()
        except ssl.SSLError as exc:
            conn.close()
            raise RuntimeFailure(
                "tail_tls",
                f"TLS with the tail at {host}:{port} failed: {exc}",
                "check its certificate",
            ) from None
        if self.pin and not presents_pin(conn.sock, self.pin):  # type: ignore[arg-type]
            conn.close()
            raise RuntimeFailure(
                "tail_tls",
                f"the tail at {host}:{port} presented a certificate other than the pinned one",
                "something on the path impersonates the tail; nothing was sent",
            )
        return conn

    def _conn(self, target: Target) -> tuple[http.client.HTTPConnection, bool]:
        conns = self._local.__dict__.setdefault("conns", {})
        if target in conns:
            return conns[target], True
        conns[target] = self._open(target)
        return conns[target], False

    def _drop(self, target: Target) -> None:
        conn = self._local.__dict__.get("conns", {}).pop(target, None)
        if conn is not None:
            conn.close()

    def post(
        self, url: str, frame: bytes | Sequence[Part], token: str | None = None
    ) -> tuple[bytes | bytearray, dict[str, float]]:
        """The tail's logits frame for `frame` (or its parts, `frames.encode_parts`), and the
        tail's timing parts."""
        target = _target(url, bool(self.pin))
        if target[0] in wire.SCHEMES:
            parts = [frame] if isinstance(frame, bytes | bytearray | memoryview) else frame
            return self._stream_post(url, target, parts, token)
        if not isinstance(frame, bytes):
            frame = b"".join(frame)
        ep = protocol.INFER
        headers = {"Content-Type": ep.answer, **protocol.bearer(token)}

        def exchange(conn: http.client.HTTPConnection) -> tuple[http.client.HTTPResponse, bytes]:
            conn.request(ep.method, ep.path, body=frame, headers=headers)
            resp = conn.getresponse()
            return resp, resp.read()

        resp, body = self._round_trip(
            url,
            lambda: self._conn(target),
            exchange,
            lambda: self._drop(target),
            "check that the tail server is running",
        )
        if resp.status >= 400:
            raise _tail_error(resp.status, body, url)
        return body, protocol.parse_server_timing(resp.getheader(protocol.TIMING_HEADER))

    def _round_trip(
        self,
        url: str,
        connect: Callable[[], tuple[Any, bool]],
        exchange: Callable[[Any], R],
        drop: Callable[[], None],
        unreachable_hint: str,
    ) -> R:
        """One request on this thread's kept connection, whatever the transport: a kept
        connection the tail closed while idle is retried once on a new one; every other
        failure becomes its `tail_*` error."""
        for attempt in range(2):
            reused = False
            try:
                conn, reused = connect()
                return exchange(conn)
            except TimeoutError:
                drop()
                raise RuntimeFailure(
                    "tail_timeout",
                    f"tail {url} did not answer in {self.timeout:g} s",
                    "the tail is overloaded or stuck",
                ) from None
            except ConnectionRefusedError:
                drop()
                raise RuntimeFailure(
                    "tail_unreachable", f"cannot connect to the tail at {url}", unreachable_hint
                ) from None
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                drop()
                if reused and attempt == 0:  # a kept connection the tail closed: retry
                    continue
                raise RuntimeFailure(
                    "tail_disconnected",
                    f"tail {url} closed the connection ({type(exc).__name__})",
                    "the tail may be restarting; retry",
                ) from None
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _stream(self, target: Target, token: str | None) -> tuple[BlockingStream, bool]:
        conns = self._local.__dict__.setdefault("streams", {})
        key = (target, token)
        if key in conns:
            return conns[key], True
        scheme, host, port = target
        try:
            conn = BlockingStream(
                host,
                port,
                tls=self._tls if scheme == "tls" else None,
                pin=self.pin,
                token=token,
                timeout=self.timeout,
            )
        except ssl.SSLError as exc:
            raise RuntimeFailure(
                "tail_tls",
                f"TLS with the tail at {host}:{port} failed: {exc}",
                "check its certificate",
            ) from None
        except RuntimeFailure as exc:  # the pin: nothing was sent
            raise RuntimeFailure("tail_tls", exc.message, exc.hint) from None
        if conn.hello_status != 200:
            conn.close()
            raise _tail_error(conn.hello_status, conn.hello_body, f"{host}:{port}")
        conns[key] = conn
        return conn, False

    def _drop_stream(self, target: Target, token: str | None) -> None:
        conn = self._local.__dict__.get("streams", {}).pop((target, token), None)
        if conn is not None:
            conn.close()

    def _stream_post(
        self, url: str, target: Target, parts: Sequence[Part], token: str | None
    ) -> tuple[bytearray, dict[str, float]]:
        status, meta, body = self._round_trip(
            url,
            lambda: self._stream(target, token),
            lambda conn: conn.roundtrip(parts),
            lambda: self._drop_stream(target, token),
            "check that the tail server is running with --stream-port",
        )
        if status >= 400:
            raise _tail_error(status, body, url)
        return body, wire.timing_of(meta)


def _tail_error(status: int, body: bytes | bytearray, url: str) -> RuntimeFailure:
    err = protocol.parse_error(status, bytes(body), f"tail {url}")
    passed = status if status in PASS_THROUGH else 502
    return RuntimeFailure(
        f"tail_{err.code}", f"tail server failed: {err.message}", err.hint, passed
    )


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
