"""Run an aiohttp application until SIGINT/SIGTERM, then shut down gracefully.

Shutdown order (aiohttp's runner): stop listening, close idle keep-alive connections, run the
application's `on_shutdown` hooks (the tail server drains its batch queue there), wait up to
`shutdown_timeout` for in-flight requests, then clean up.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
from collections.abc import Callable

from aiohttp import web

from privpart.runtime.server.http import LIMITS_KEY, CappedRunner
from privpart.runtime.server.limits import ServerLimits

# How much of a request body aiohttp buffers before it pauses reading the socket (its default is
# 64 KiB). A 1.6 MB feature frame then streams in without flow-control pauses: 0.55-0.59 ms to
# read instead of 0.78-0.83 ms (loopback, http.client sender, 100 requests, two runs each).
READ_BUFFER = 4 << 20
# How long aiohttp keeps reading (and discarding) a body it did not consume before it closes the
# connection, e.g. after a 408 body timeout or a 413 (its default is 10 s): a slow sender's
# socket is freed this long after its answer.
LINGER_S = 1.0


async def start_site(
    app: web.Application,
    host: str,
    port: int,
    shutdown_timeout: float = 30.0,
    tls: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, str]:
    """Start serving (HTTPS with `tls`); returns the runner and the bound URL (port 0 picks a
    free port). The application's `ServerLimits` cap its open connections."""
    limits: ServerLimits = app.get(LIMITS_KEY, ServerLimits())
    runner = CappedRunner(
        app,
        limits.max_connections,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout,
        access_log=None,
        read_bufsize=READ_BUFFER,
        lingering_time=LINGER_S,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, ssl_context=tls)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, f"{'https' if tls else 'http'}://{host}:{bound}"


async def serve_until_signal(
    app: web.Application,
    host: str,
    port: int,
    on_started: Callable[[str], None] | None = None,
    on_stopping: Callable[[], None] | None = None,
    shutdown_timeout: float = 30.0,
    tls: ssl.SSLContext | None = None,
) -> None:
    runner, url = await start_site(app, host, port, shutdown_timeout, tls)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if on_started is not None:
        on_started(url)
    try:
        await stop.wait()
    finally:
        if on_stopping is not None:
            on_stopping()
        await runner.cleanup()
