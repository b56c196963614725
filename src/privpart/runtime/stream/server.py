"""A server's stream listener: `wire.py`'s format over TCP or TLS, beside its HTTP port.

Two servers have one: the tail server (`TailStream`: each request is a features frame, answered
by the same `TailHandlers.infer_frame` as `POST /v1/infer`: one frame validation, the batcher,
metrics) and the enclave host (`enclave/host.py`: each request is a session id and a sealed
record, relayed to the worker as `POST /v1/infer` relays it). Every connection goes through
the HTTP server's `ConnectionGuard` (one connection cap and per-address limit for both ports).
What the stream saves is on the serial path: a request is received by `recv_into` straight
into the one buffer the model then reads (asyncio's `BufferedProtocol`), with no HTTP parsing,
chunk loop or per-request headers.

Limits, in the terms of `ServerLimits`:
- the hello (and over TLS the handshake) within `header_timeout_s` of the accept, else closed;
- with a token, the hello must carry it (401, closed);
- a request declaring more than the frame limit is refused from its prefix (413, closed);
- a request's bytes, once its first byte arrived, within `body_timeout_s` (408, closed);
- between requests a connection idles at most `idle_timeout_s`, then is closed;
- one request in flight per connection: the server reads the next only after answering.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable
from enum import Enum
from typing import Any, Protocol

from aiohttp import web

from privpart.runtime import protocol
from privpart.runtime.addresses import address_key
from privpart.runtime.errors import RuntimeFailure
from privpart.runtime.server.app import tail_handlers
from privpart.runtime.server.guard import ConnectionGuard, Phase
from privpart.runtime.server.handlers import TailHandlers
from privpart.runtime.server.http import CappedRunner, redacted
from privpart.runtime.server.limits import ServerLimits, check_token
from privpart.runtime.stream import wire


class StreamService(Protocol):
    """What a server answers on its stream: the hello's description, each request's answer."""

    @property
    def body_limit(self) -> int: ...

    def describe(self) -> dict[str, Any]: ...

    async def answer(
        self, body: bytearray, read_ms: float
    ) -> tuple[bytes | bytearray | memoryview, dict[str, float]]: ...

    def count(self, status: int, seconds: float) -> None: ...


class TailStream:
    """The tail server's stream: features frames in, logits frames out."""

    def __init__(self, handlers: TailHandlers) -> None:
        self.handlers = handlers

    @property
    def body_limit(self) -> int:
        return self.handlers.body_limit

    def describe(self) -> dict[str, Any]:
        return self.handlers.describe()

    async def answer(self, body: bytearray, read_ms: float) -> tuple[bytes, dict[str, float]]:
        return await self.handlers.infer_frame(body, read_ms)

    def count(self, status: int, seconds: float) -> None:
        self.handlers.count(protocol.INFER, status, seconds)


class Read(Enum):
    HELLO_PREFIX = "hello prefix"
    HELLO = "hello"
    PREFIX = "request prefix"
    BODY = "request"
    ANSWERING = "answering"


def _error(exc: RuntimeFailure) -> list:
    body = json.dumps(exc.to_json()).encode()
    return wire.reply_parts(exc.status, body)


class StreamConnection(asyncio.BufferedProtocol):
    """One client's connection: reads hello, then requests, each into a buffer of its size."""

    def __init__(self, server: StreamServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.since = self.loop.time()
        self.transport: asyncio.Transport | None = None
        self.key = ""
        self.where = "stream"
        self.phase = Phase.WAITING
        self.released = False
        self.state = Read.HELLO_PREFIX
        self._buf = bytearray(wire.HELLO.size)
        self._view = memoryview(self._buf)
        self._got = 0
        self._first_byte = 0.0
        self._deadline: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None

    # -- what the connection guard reads ------------------------------------------------
    @property
    def evictable(self) -> bool:
        return self.phase is not Phase.ACTIVE and not self.released

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.server.guard.forget(self)  # type: ignore[arg-type]

    def close(self, answer: list | None = None) -> None:
        """Close now (it stops counting at once), after writing `answer` if given."""
        self._disarm()
        self.release()
        if self.transport is not None and not self.transport.is_closing():
            if answer:
                self.transport.write(b"".join(answer))
            self.transport.close()

    # -- asyncio.BufferedProtocol ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) and peer else None
        self.key = address_key(host)
        self.where = f"stream infer from {host}"
        limits = self.server.limits
        if not self.server.guard.admit(self):  # type: ignore[arg-type]
            self.released = True
            busy = RuntimeFailure(
                "busy", "too many open connections", "retry after a short backoff", status=503
            )
            self.close(_error(busy))
            return
        self.server.connections.add(self)
        self._arm(limits.header_timeout_s, self._hello_late)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view[self._got :]

    def buffer_updated(self, nbytes: int) -> None:
        if self.state is Read.PREFIX and self._got == 0 and nbytes:
            self._request_started()
        self._got += nbytes
        if self._got == len(self._buf):
            self._complete()

    def eof_received(self) -> bool:
        return False  # a half-closed client is done: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.release()
        self.server.connections.discard(self)
        if self._task is not None:
            self._task.cancel()  # the batcher skips a request whose client went away

    # -- the reading state machine ----------------------------------------------------------
    def _expect(self, state: Read, size: int) -> None:
        self.state = state
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)
        self._got = 0

    def _complete(self) -> None:
        if self.state is Read.HELLO_PREFIX:
            magic, size = wire.HELLO.unpack(self._buf)
            if magic != wire.MAGIC or not 1 <= size <= wire.MAX_HELLO:
                self._refuse(
                    "bad_hello",
                    "this port speaks privpart's stream protocol: the connection must start "
                    f"with {wire.MAGIC!r} and a hello of 1..{wire.MAX_HELLO} bytes",
                    "connect with a privpart client to a tcp:// or tls:// URL, or use the "
                    "server's HTTP port",
                )
                return
            self._expect(Read.HELLO, size)
        elif self.state is Read.HELLO:
            self._hello(bytes(self._buf))
        elif self.state is Read.PREFIX:
            (size,) = wire.REQUEST.unpack(self._buf)
            limit = self.server.service.body_limit
            if not 1 <= size <= limit:
                self._refuse(
                    "too_large" if size else "truncated",
                    f"request declares {size} bytes; this server accepts 1..{limit}",
                    "send one frame of at most max_batch samples per request",
                    status=413 if size else 400,
                )
                return
            self.phase, self.since = Phase.ACTIVE, self.loop.time()
            self._expect(Read.BODY, size)
        elif self.state is Read.BODY:
            read_ms = (time.perf_counter() - self._first_byte) * 1e3
            body = self._buf
            self.state = Read.ANSWERING
            self._disarm()
            assert self.transport is not None
            self.transport.pause_reading()
            self._task = self.loop.create_task(self._answer(body, read_ms))

    def _hello(self, blob: bytes) -> None:
        try:
            hello = json.loads(blob)
        except (UnicodeDecodeError, json.JSONDecodeError):
            hello = None
        if not isinstance(hello, dict) or hello.get("version") != wire.VERSION:
            self._refuse(
                "bad_hello",
                f"stream hello is not JSON {{version: {wire.VERSION}, token}}",
                "upgrade the client to this server's runtime version",
            )
            return
        token = hello.get("token")
        try:
            check_token(
                self.server.limits.token,
                protocol.bearer(token if isinstance(token, str) else None).get(
                    protocol.AUTH_HEADER
                ),
            )
        except RuntimeFailure as exc:
            self.close(_error(exc))
            return
        info = json.dumps(self.server.service.describe()).encode()
        assert self.transport is not None
        self.transport.write(b"".join(wire.reply_parts(200, info)))
        self._idle()

    def _request_started(self) -> None:
        self._first_byte = time.perf_counter()
        self._arm(self.server.limits.body_timeout_s, self._body_late)

    def _idle(self) -> None:
        self.phase, self.since = Phase.IDLE, self.loop.time()
        self._expect(Read.PREFIX, wire.REQUEST.size)
        self._arm(self.server.limits.idle_timeout_s, self.close)

    async def _answer(self, body: bytearray, read_ms: float) -> None:
        start = time.perf_counter() - read_ms / 1e3
        status = 500
        try:
            answer, parts = await self.server.service.answer(body, read_ms)
            status = 200
            out = wire.reply_parts(200, answer, {"timing": parts})
        except RuntimeFailure as exc:
            status = exc.status
            out = _error(redacted(exc, self.where))
        except Exception as exc:  # a request must never take the server down
            failure = RuntimeFailure("internal", f"{type(exc).__name__}: {exc}")
            out = _error(redacted(failure, self.where))
        finally:
            self._task = None
            self.server.service.count(status, time.perf_counter() - start)
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(b"".join(out))
        self._idle()
        self.transport.resume_reading()

    def _refuse(self, code: str, message: str, hint: str, status: int = 400) -> None:
        self.close(_error(RuntimeFailure(code, message, hint, status)))

    def _hello_late(self) -> None:
        self.server.guard.header_timeouts += 1
        self.close()

    def _body_late(self) -> None:
        self.close(
            _error(
                RuntimeFailure(
                    "body_timeout",
                    f"request did not arrive within {self.server.limits.body_timeout_s:g} s",
                    "send the whole request at once; the connection was closed",
                )
            )
        )

    def _arm(self, seconds: float, then: object) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, then)  # type: ignore[arg-type]

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


class StreamServer:
    """The stream listener of one server, sharing its connection guard."""

    def __init__(self, service: StreamService, guard: ConnectionGuard) -> None:
        self.service = service
        self.guard = guard
        self.limits: ServerLimits = guard.limits
        self.connections: set[StreamConnection] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> str:
        """Listen; returns the URL clients connect to (`tcp://` or `tls://`)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: StreamConnection(self),
            host,
            port,
            ssl=tls,
            backlog=1024,
            ssl_handshake_timeout=self.limits.header_timeout_s if tls else None,
        )
        bound = self._server.sockets[0].getsockname()[1]
        return f"{'tls' if tls else 'tcp'}://{host}:{bound}"

    def stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()

    async def close_all(self, timeout_s: float = 5.0) -> None:
        """Close every connection once the answers in flight (the batcher has drained) are
        written."""
        tasks = [c._task for c in self.connections if c._task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
        for conn in list(self.connections):
            conn.close()


class StreamSite:
    """The stream port of a server application (`runner.ExtraSite`); `service_of` gives its
    service once the application runs. The application's `/v1/info` names the stream URL
    under `stream` (through `on_url`)."""

    def __init__(
        self,
        service_of: Callable[[], StreamService],
        host: str,
        port: int,
        tls: ssl.SSLContext | None = None,
        on_url: Callable[[str], None] | None = None,
    ) -> None:
        self.service_of, self.host, self.port, self.tls = service_of, host, port, tls
        self.on_url = on_url
        self.url = ""
        self.server: StreamServer | None = None

    async def start(self, runner: CappedRunner) -> str:
        self.server = StreamServer(self.service_of(), runner.guard)
        self.url = await self.server.start(self.host, self.port, self.tls)
        if self.on_url is not None:
            self.on_url(self.url)
        return self.url

    def stop_listening(self) -> None:
        if self.server is not None:
            self.server.stop_listening()

    async def close_all(self) -> None:
        if self.server is not None:
            await self.server.close_all()


def tail_stream_site(
    app: web.Application, host: str, port: int, tls: ssl.SSLContext | None = None
) -> StreamSite:
    """The stream port of a tail application built by `build_tail_app`."""
    handlers = tail_handlers(app)

    def advertise(url: str) -> None:
        handlers.extra_info["stream"] = url

    return StreamSite(lambda: TailStream(handlers), host, port, tls, advertise)
