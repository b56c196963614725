"""The asyncio client of a stream port (`wire.py`): the device client's link to a tail server,
and the enclave client's to an enclave host.

A pool of persistent connections, one request in flight on each (concurrent callers open more).
Replies are read by asyncio's `BufferedProtocol` straight into a buffer of their declared size.
Failures map to the same errors as the HTTP client (`client/http.py`): `TransportError`
(`unreachable`, `disconnected`, `timeout`, `tls_pin`, `tls_verify`) or the server's own
`RemoteError`.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from privpart.errors import PrivpartError
from privpart.runtime.errors import RemoteError, TransportError
from privpart.runtime.stream import wire
from privpart.runtime.tls import presents_pin

Part = bytes | bytearray | memoryview
MAX_REPLY = 256 << 20


def parse_url(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) of a `tcp://HOST:PORT` or `tls://HOST:PORT` URL."""
    parts = urlsplit(url)
    if parts.scheme not in wire.SCHEMES or not parts.hostname or parts.port is None:
        raise PrivpartError(
            f"stream URL {url!r} is not tcp://HOST:PORT or tls://HOST:PORT",
            "pass the stream URL `privpart serve --stream-port` printed",
        )
    return parts.hostname, parts.port, wire.SCHEMES[parts.scheme]


class _Connection(asyncio.BufferedProtocol):
    """One connection: reads each reply (prefix, meta, body) into buffers of their sizes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self._stage = 0  # 0 prefix, 1 meta, 2 body
        self._reset()

    def _reset(self) -> None:
        self._stage = 0
        self._buf = bytearray(wire.REPLY.size)
        self._view = memoryview(self._buf)
        self._got = 0
        self._status = self._size = 0
        self._meta = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view[self._got :]

    def buffer_updated(self, nbytes: int) -> None:
        self._got += nbytes
        while self._got == len(self._buf) and not self.closed:
            if not self._advance():
                return

    def _advance(self) -> bool:
        """Move past a complete part; False when the reply is delivered or refused."""
        if self._stage == 0:
            self._size, self._status, meta = wire.REPLY.unpack(self._buf)
            if self._size > MAX_REPLY or meta > wire.MAX_META:
                self._fail(ConnectionError(f"reply of {self._size} bytes exceeds {MAX_REPLY}"))
                return False
            self._stage, self._buf = 1, bytearray(meta)
        elif self._stage == 1:
            self._meta = bytes(self._buf)
            self._stage, self._buf = 2, bytearray(self._size)
        else:
            waiter, reply = self.waiter, (self._status, wire.parse_meta(self._meta), self._buf)
            self.waiter = None
            self._reset()
            if waiter is not None and not waiter.done():
                waiter.set_result(reply)
            return False
        self._view, self._got = memoryview(self._buf), 0
        return True

    def _fail(self, exc: BaseException) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the stream"))

    async def roundtrip(self, parts: Sequence[Part]) -> tuple[int, dict[str, Any], bytearray]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        for part in coalesce(parts):
            self.transport.write(part)
        return await self.waiter


def coalesce(parts: Sequence[Part], small: int = 64 << 10) -> list[Part]:
    """`parts` with each run of small ones joined: every write of a TCP_NODELAY socket leaves
    as its own segment, and the server would wake for a 4-byte prefix alone; large parts (the
    payload) are passed as they are, never copied."""
    out: list[Part] = []
    run: list[Part] = []
    for part in parts:
        if memoryview(part).nbytes < small:
            run.append(part)
            continue
        if run:
            out.append(b"".join(run))
            run = []
        out.append(part)
    if run:
        out.append(b"".join(run))
    return out


class StreamClient:
    """Requests to a stream port; for a tail, the same calls as `client.tail.TailClient`."""

    def __init__(
        self,
        url: str,
        timeout: float = 30.0,
        token: str | None = None,
        tls_pin: bytes | None = None,
    ) -> None:
        self.host, self.port, tls = parse_url(url)
        if tls_pin and not tls:
            raise PrivpartError(
                f"tls_pin is given but {url} is a plain tcp:// stream, which has no certificate",
                "connect to the tail's TLS stream (tls://HOST:PORT, a tail started with "
                "--tls-cert) or drop the pin",
            )
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.token = token
        self.pin = tls_pin or b""
        self._tls: ssl.SSLContext | None = None
        if tls:
            self._tls = ssl.create_default_context()
            if self.pin:  # the pin is the trust anchor: exactly that certificate, no CA
                self._tls.check_hostname = False
                self._tls.verify_mode = ssl.CERT_NONE
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._info: dict[str, Any] | None = None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                transport, conn = await loop.create_connection(
                    _Connection, self.host, self.port, ssl=self._tls
                )
        except TimeoutError:
            raise TransportError(
                "unreachable",
                f"no connection to {self.url} within {self.timeout:g} s",
                "check the URL and that the server runs with --stream-port",
                status=503,
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise TransportError(
                "tls_verify",
                f"{self.url} presented a certificate that does not verify: {exc.verify_message}",
                "pin the server's certificate (tls_pin=cert_fingerprint(FILE)) or install its CA",
                status=502,
            ) from None
        except OSError as exc:
            raise TransportError(
                "unreachable",
                f"cannot connect to {self.url}: {exc.strerror or exc}",
                "check the URL and that the server runs with --stream-port",
                status=503,
            ) from None
        if self.pin and not presents_pin(transport.get_extra_info("ssl_object"), self.pin):
            transport.close()
            raise TransportError(
                "tls_pin",
                f"{self.url} presented a certificate other than the pinned one",
                "check the server's certificate out of band; do not send data to this server",
                status=502,
            )
        self._open.add(conn)
        status, _, body = await self._exchange(conn, [wire.hello(self.token)])
        if status != 200:
            self._drop(conn)
            raise RemoteError.from_answer(status, body, self.url)
        try:
            self._info = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            self._drop(conn)
            raise RemoteError(
                "bad_answer",
                f"{self.url} answered the hello with something that is not JSON",
                "is this a privpart stream port? (`privpart serve --stream-port` prints it)",
            ) from None
        return conn

    async def _exchange(
        self, conn: _Connection, parts: Sequence[Part]
    ) -> tuple[int, dict[str, Any], bytearray]:
        try:
            async with asyncio.timeout(self.timeout):
                return await conn.roundtrip(parts)
        except TimeoutError:
            self._drop(conn)
            raise TransportError(
                "timeout",
                f"no answer from {self.url} within {self.timeout:g} s",
                "the server is overloaded or stuck; retry later or raise the timeout",
            ) from None
        except ConnectionError as exc:
            self._drop(conn)
            raise TransportError(
                "disconnected",
                f"{self.url} closed the connection mid-request ({exc})",
                "the server may have crashed or be restarting; retry",
                status=502,
            ) from None

    def _drop(self, conn: _Connection) -> None:
        self._open.discard(conn)
        if conn.transport is not None:
            conn.transport.close()

    async def _acquire(self) -> tuple[_Connection, bool]:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn, True
            self._open.discard(conn)
        return await self._connect(), False

    async def info(self) -> dict[str, Any]:
        """The server's description (its answer to the hello)."""
        if self._info is None:
            conn, _ = await self._acquire()
            self._idle.append(conn)
        assert self._info is not None
        return self._info

    async def infer_frame(
        self, frame: bytes | Sequence[Part]
    ) -> tuple[bytearray, dict[str, float]]:
        """Send one request (bytes, or its parts, e.g. from `frames.encode_parts`): the reply's
        body (a tail's logits frame) and the server's timing parts."""
        parts = [frame] if isinstance(frame, bytes | bytearray | memoryview) else list(frame)
        parts.insert(0, wire.request_prefix(wire.frame_size(parts)))
        for attempt in range(2):
            conn, reused = await self._acquire()
            try:
                status, meta, body = await self._exchange(conn, parts)
                break
            except TransportError as exc:
                # a kept connection the server closed while idle: once more on a new one
                if exc.code == "disconnected" and reused and attempt == 0:
                    continue
                raise
        if conn.closed:
            self._open.discard(conn)
        else:
            self._idle.append(conn)
        if status >= 400:
            raise RemoteError.from_answer(status, body, self.url)
        return body, wire.timing_of(meta)

    async def close(self) -> None:
        for conn in list(self._open):
            self._drop(conn)
        self._idle.clear()
