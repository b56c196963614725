"""The aiohttp transport of privpart's servers (the tail server and the enclave host).

- `json_errors`: every failure becomes the protocol's JSON error (`protocol.Reply.error`),
  aiohttp's own 404/405/413 and unexpected exceptions (500) included: a client never parses an
  HTML page, and a bad request never takes a server down;
- `auth`: the bearer token of `ServerLimits` on every endpoint but the public ones;
- `read_body`: the request body within the size and time limits (`limits.read_limited`);
- `CappedRunner`: every connection through a `guard.ConnectionGuard` (header deadline,
  per-address limits, fair eviction at the connection cap).

Clients get generic messages for server-side failures (5xx outside `protocol.PUBLIC_5XX`:
exception text, the tail's address and network errors stay on the server); the detail goes
to the server log (`logs.py`: one line, rate limited) under a reference the client sees.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import ClientPayloadError, web

from privpart.runtime import protocol
from privpart.runtime.errors import RuntimeFailure
from privpart.runtime.logs import server_log
from privpart.runtime.server.guard import ConnectionGuard
from privpart.runtime.server.limits import ServerLimits, check_token, read_limited

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LIMITS_KEY = web.AppKey("privpart_limits", ServerLimits)


def to_response(reply: protocol.Reply) -> web.Response:
    headers = {**reply.headers, "Content-Type": reply.content_type}
    return web.Response(status=reply.status, body=reply.body, headers=headers)


# What a client reads for a failure on the server's side; the detail is in the server's log.
GENERIC_MESSAGES: dict[int, str] = {
    500: "the server failed on this request",
    502: "the server's upstream (the tail or the enclave worker) failed on this request",
    504: "the server's upstream did not answer in time",
}
GENERIC_HINT = "retry later; if it persists, give the server's operator this reference: {ref}"


def redacted(exc: RuntimeFailure, where: str) -> RuntimeFailure:
    """`exc` as a client may read it: a server-side failure loses its message and hint (they
    go to the log, one line, under a reference the client gets); anything else is as it is."""
    if exc.status < 500 or exc.code in protocol.PUBLIC_5XX:
        return exc
    generic = GENERIC_MESSAGES.get(exc.status, GENERIC_MESSAGES[500])
    ref = secrets.token_hex(4)
    server_log().warning(
        "privpart: %s %s %d ref %s: %s", where, exc.code, exc.status, ref, exc.message
    )
    return RuntimeFailure(exc.code, generic, GENERIC_HINT.format(ref=ref), exc.status)


def failure_response(exc: RuntimeFailure, where: str = "") -> web.Response:
    exc = redacted(exc, where)
    response = to_response(exc.reply())
    if exc.code in ("body_timeout", "unauthorized"):
        if exc.code == "unauthorized":
            response.headers["WWW-Authenticate"] = "Bearer"
        else:
            response.force_close()  # the rest of a trickled body is never read
    return response


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a JSON error response; log the unexpected ones (one line)."""
    where = f"{request.method} {request.path[:64]} from {request.remote}"
    try:
        return await handler(request)
    except RuntimeFailure as exc:
        return failure_response(exc, where)
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
        failure = RuntimeFailure("internal", f"{type(exc).__name__}: {exc}{_origin(exc)}")
        return failure_response(failure, where)


def _origin(exc: BaseException) -> str:
    """` at file:line` of the innermost frame: enough to find a bug, one line long."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return ""
    return f" at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


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
    declared = request.content_length
    content = request.content
    if declared is not None and declared <= limit and content.is_eof():
        # the whole body came with the headers (every small frame does): take it as it is,
        # without a timer and a chunk loop that would never wait
        body = bytearray(content.read_nowait())
        if len(body) == declared:
            return body
        raise RuntimeFailure(
            "truncated", f"body ended after {len(body)} of {declared} bytes", "send the whole frame"
        )
    return await read_limited(_chunks(request), declared, limit, limits.body_timeout_s)


def route(app: web.Application, endpoint: protocol.Endpoint, handler: Handler) -> None:
    app.router.add_route(endpoint.method, endpoint.path, handler)


class CappedRunner(web.AppRunner):
    """An AppRunner whose connections (all sites together) go through one `ConnectionGuard`:
    its middleware is put first in the application's chain."""

    def __init__(self, app: web.Application, limits: ServerLimits, **kwargs: object) -> None:
        super().__init__(app, **kwargs)  # type: ignore[arg-type]
        self.guard = ConnectionGuard(limits)
        app.middlewares.insert(0, self.guard.middleware)
        self._factory: object | None = None

    @property
    def server(self) -> web.Server | None:  # type: ignore[override]
        inner = super().server
        if inner is None:
            return None
        if self.guard.server is not inner:  # one guard for all sites
            self._factory = self.guard.factory(inner)
        return self._factory  # type: ignore[return-value]
