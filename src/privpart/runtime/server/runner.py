"""Run an aiohttp application until SIGINT/SIGTERM, then shut down gracefully.

Shutdown order (aiohttp's runner): stop listening, close idle keep-alive connections, run the
application's `on_shutdown` hooks (the tail server drains its batch queue there), wait up to
`shutdown_timeout` for in-flight requests, then clean up.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
from collections.abc import Callable, Sequence
from typing import Protocol

from aiohttp import web

from privpart.errors import PrivpartError
from privpart.runtime.logs import server_log
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


class GuardedSite(web.TCPSite):
    """aiohttp's TCPSite, with asyncio's TLS handshake timeout set: TCPSite does not pass one,
    so asyncio's 60 s default would let a client that never finishes its handshake hold a
    socket that long, before the connection guard (which starts after the handshake) sees it."""

    def __init__(
        self, runner: web.BaseRunner, *args: object, handshake_timeout_s: float, **kwargs: object
    ) -> None:
        super().__init__(runner, *args, **kwargs)  # type: ignore[arg-type]
        self.handshake_timeout_s = handshake_timeout_s

    async def start(self) -> None:
        if self._ssl_context is None:
            await super().start()
            return
        await web.BaseSite.start(self)  # registers the site with its runner
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._runner.server,  # type: ignore[arg-type]
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            ssl_handshake_timeout=self.handshake_timeout_s,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


async def start_site(
    app: web.Application,
    host: str,
    port: int,
    shutdown_timeout: float = 30.0,
    tls: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, str]:
    """Start serving (HTTPS with `tls`); returns the runner and the bound URL (port 0 picks a
    free port). The application's `ServerLimits` bound its connections (`guard.py`)."""
    limits: ServerLimits = app.get(LIMITS_KEY, ServerLimits())
    runner = CappedRunner(
        app,
        limits,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout,
        access_log=None,
        read_bufsize=READ_BUFFER,
        lingering_time=LINGER_S,
        keepalive_timeout=limits.idle_timeout_s,
        logger=server_log(),  # aiohttp's request errors: one line each, rate limited
    )
    await runner.setup()
    site = GuardedSite(
        runner,
        host,
        port,
        backlog=1024,
        ssl_context=tls,
        handshake_timeout_s=limits.header_timeout_s,
    )
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, f"{'https' if tls else 'http'}://{host}:{bound}"


class ExtraSite(Protocol):
    """Another listener of the same server (the tail's stream port): started after the HTTP
    site with its runner (whose connection guard it shares), stopped around its shutdown."""

    url: str
    host: str
    port: int

    async def start(self, runner: CappedRunner) -> str: ...

    def stop_listening(self) -> None: ...

    async def close_all(self) -> None: ...


async def serve_until_signal(
    app: web.Application,
    host: str,
    port: int,
    on_started: Callable[[str], None] | None = None,
    on_stopping: Callable[[], None] | None = None,
    shutdown_timeout: float = 30.0,
    tls: ssl.SSLContext | None = None,
    sites: Sequence[ExtraSite] = (),
) -> None:
    """Serve until SIGINT/SIGTERM. `sites` start after the HTTP site and stop listening
    before it drains, and their connections close once everything in flight is answered."""
    try:
        runner, url = await start_site(app, host, port, shutdown_timeout, tls)
    except OSError as exc:
        raise _cannot_listen(host, port, exc) from None
    for site in sites:
        try:
            await site.start(runner)  # type: ignore[arg-type]
        except OSError as exc:
            await runner.cleanup()
            raise _cannot_listen(site.host, site.port, exc) from None
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
        for site in sites:
            site.stop_listening()
        await runner.cleanup()
        for site in sites:
            await site.close_all()


def _cannot_listen(host: str, port: int, exc: OSError) -> PrivpartError:
    return PrivpartError(
        f"cannot listen on {host}:{port}: {exc.strerror or exc}",
        "choose a free port (each listener needs its own), or stop the process holding it",
    )
