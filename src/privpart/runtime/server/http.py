"""The aiohttp transport of privpart's servers (the tail server and the enclave host).

- `json_errors`: every failure becomes the protocol's JSON error (`protocol.Reply.error`),
  aiohttp's own 404/405/413 and unexpected exceptions (500) included: a client never parses an
  HTML page, and a bad request never takes a server down;
- `auth`: the bearer token of `ServerLimits` on every endpoint but the public ones;
- `read_body`: the request body within the size and time limits (`limits.read_limited`);
- `CappedRunner`: at most `max_connections` open connections; one more is answered 503 and
  closed without reaching the application.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import ClientPayloadError, web

from privpart.runtime import protocol
from privpart.runtime.errors import RuntimeFailure
from privpart.runtime.server.limits import ServerLimits, check_token, read_limited

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LIMITS_KEY = web.AppKey("privpart_limits", ServerLimits)


def to_response(reply: protocol.Reply) -> web.Response:
    headers = {**reply.headers, "Content-Type": reply.content_type}
    return web.Response(status=reply.status, body=reply.body, headers=headers)


def failure_response(exc: RuntimeFailure) -> web.Response:
    response = to_response(exc.reply())
    if exc.code in ("body_timeout", "unauthorized"):
        if exc.code == "unauthorized":
            response.headers["WWW-Authenticate"] = "Bearer"
        else:
            response.force_close()  # the rest of a trickled body is never read
    return response


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a JSON error response; log the unexpected ones."""
    try:
        return await handler(request)
    except RuntimeFailure as exc:
        return failure_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        return to_response(
            protocol.Reply.error(
                code.get(exc.status, f"http_{exc.status}"),
                exc.reason,
                "see docs/runtime.md for the endpoints and their limits",
                exc.status,
            )
        )
    except (ConnectionError, TimeoutError):
        raise  # the client went away: aiohttp closes the connection
    except Exception as exc:
        print(f"privpart server: internal error on {request.path}:", file=sys.stderr)
        traceback.print_exc()
        return to_response(
            protocol.Reply.error(
                "internal",
                f"server failed on this request: {type(exc).__name__}",
                "report this with the request that caused it",
            )
        )


def auth(limits: Callable[[], ServerLimits], public: set[str]) -> Callable:
    """Middleware: the bearer token of `limits()` on every path outside `public`."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in public:
            check_token(limits().token, request.headers.get(protocol.AUTH_HEADER))
        return await handler(request)

    return check


async def _chunks(request: web.Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.content.iter_any():
            yield chunk
    except ClientPayloadError as exc:
        raise RuntimeFailure(
            "truncated", f"request body is incomplete: {exc}", "send the whole frame"
        ) from None


async def read_body(request: web.Request, limit: int, limits: ServerLimits) -> bytearray:
    return await read_limited(
        _chunks(request), request.content_length, limit, limits.body_timeout_s
    )


def route(app: web.Application, endpoint: protocol.Endpoint, handler: Handler) -> None:
    app.router.add_route(endpoint.method, endpoint.path, handler)


class _Refused(asyncio.Protocol):
    """A connection over the cap: one JSON 503 and close, before any request is read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        body = json.dumps(
            protocol.error_body(
                "busy", "too many open connections", "retry after a short backoff (Retry-After)"
            )
        ).encode()
        head = (
            f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: {protocol.JSON_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        )
        transport.write(head.encode() + body)  # type: ignore[attr-defined]
        transport.close()


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted from accept to close.

    Counting in the factory (not in aiohttp's connection list, filled a loop iteration later)
    keeps a burst of connects, which asyncio accepts many at a time, under the cap too."""

    def __init__(self, inner: asyncio.Protocol, factory: _CappedFactory) -> None:
        self.inner, self.factory = inner, factory

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.factory.live -= 1
        self.inner.connection_lost(exc)


class _CappedFactory:
    def __init__(self, server: web.Server, cap: int) -> None:
        self.server, self.cap = server, cap
        self.live = 0

    def __call__(self) -> asyncio.Protocol:
        if self.live >= self.cap:
            return _Refused()
        self.live += 1
        return _Counted(self.server(), self)


class CappedRunner(web.AppRunner):
    """An AppRunner whose sites accept at most `max_connections` connections at a time."""

    def __init__(self, app: web.Application, max_connections: int, **kwargs: object) -> None:
        super().__init__(app, **kwargs)  # type: ignore[arg-type]
        self.max_connections = max_connections
        self._capped: _CappedFactory | None = None

    @property
    def server(self) -> web.Server | None:  # type: ignore[override]
        inner = super().server
        if inner is None:
            return None
        if self._capped is None or self._capped.server is not inner:  # one count for all sites
            self._capped = _CappedFactory(inner, self.max_connections)
        return self._capped  # type: ignore[return-value]
