"""The tail server over aiohttp: the untrusted accelerator's side of the split.

A thin adapter: endpoints come from `protocol.TAIL_ENDPOINTS`, answers from `handlers.py`,
errors, auth and body limits from `http.py`/`limits.py` (docs/runtime.md lists every endpoint,
status and limit). `ray_serve.py` is the other adapter of the same handlers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from privpart.runtime import protocol
from privpart.runtime.compute_thread import ComputeThread
from privpart.runtime.head import SplitHead
from privpart.runtime.server.handlers import Handler, TailHandlers
from privpart.runtime.server.http import (
    LIMITS_KEY,
    auth,
    json_errors,
    read_body,
    route,
    to_response,
)
from privpart.runtime.server.service import TailConfig, TailService

TAIL_KEY = web.AppKey("privpart_tail", object)
HANDLERS_KEY = web.AppKey("privpart_tail_handlers", TailHandlers)


def _adapt(handlers: TailHandlers, endpoint: protocol.Endpoint, handler: Handler) -> Callable:
    limits = handlers.service.config.limits

    async def answer(request: web.Request) -> web.Response:
        start = time.perf_counter()
        status = 500
        try:
            body = (
                await read_body(request, handlers.body_limit, limits)
                if endpoint.body is not None
                else bytearray()
            )
            if endpoint is protocol.INFER:
                reply = await handler(body, (time.perf_counter() - start) * 1e3)
            else:
                reply = await handler(body)
            status = reply.status
            return to_response(reply)
        except Exception as exc:
            status = getattr(exc, "status", 500)
            raise
        finally:
            handlers.count(endpoint, status, time.perf_counter() - start)

    return answer


def build_tail_app(
    split: SplitHead, config: TailConfig | None = None, compute: ComputeThread | None = None
) -> web.Application:
    service = TailService(split, config or TailConfig(), compute)
    handlers = TailHandlers(service)
    limits = service.config.limits
    public = {ep.path for ep in protocol.TAIL_ENDPOINTS if ep.public}
    app = web.Application(
        middlewares=[json_errors, auth(lambda: service.config.limits, public)],
        client_max_size=service.spec.max_bytes,
    )
    app[TAIL_KEY] = service
    app[HANDLERS_KEY] = handlers
    app[LIMITS_KEY] = limits
    for endpoint in protocol.TAIL_ENDPOINTS:
        route(app, endpoint, _adapt(handlers, endpoint, handlers.handler(endpoint)))

    async def on_startup(_: web.Application) -> None:
        service.batcher.start()

    async def on_shutdown(_: web.Application) -> None:
        await service.batcher.drain(service.config.drain_timeout_s)

    async def on_cleanup(_: web.Application) -> None:
        await service.batcher.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app


def tail_service(app: web.Application) -> TailService:
    return app[TAIL_KEY]  # type: ignore[return-value]


def tail_handlers(app: web.Application) -> TailHandlers:
    """The application's endpoint handlers, for another transport of the same server."""
    return app[HANDLERS_KEY]
