"""Who may hold a connection to a privpart server, and for how long.

aiohttp (3.14) times out nothing before a request's headers are complete: a connection that
sends nothing, or "GET /" and then a byte every 30 s, is held forever, and ~500 of them fill
the connection cap, after which every new client gets 503. Its only related setting,
`keepalive_timeout`, runs between requests on a keep-alive connection (`runner.start_site`
sets it to `ServerLimits.idle_timeout_s`). This guard adds, per connection, around aiohttp's
own protocol object:

- **a header deadline**: a new connection's first request must be dispatched within
  `header_timeout_s` of its accept (in total, however the bytes trickle), and a keep-alive
  connection's next request within `header_timeout_s` of its first byte; past it the
  connection is closed (408 `header_timeout` when some bytes came). Over TLS the handshake
  is bounded by the same time (`runner.GuardedSite`);
- **per-address limits**: one address (an IPv6 /64, `addresses.address_key`) holds at most
  `max_connections_per_address`; at that limit its own oldest connection that is between
  requests is closed for the new one, or the new one is refused (JSON 503 `busy`);
- **fair eviction at the cap**: at `max_connections`, the address holding the most
  connections, if it holds more than the newcomer's address, gives up its oldest one that is
  between requests (waiting for headers, or idle on keep-alive); otherwise the newcomer is
  refused (JSON 503 `busy`): an address that already holds as many as any other gets no
  more. Connections in the middle of a request are never closed by the guard: the body
  timeout (`limits.read_limited`) bounds those.

So idle and slow-drip connections cost an attacker its own connections, not anyone else's:
a client from an address holding fewer connections than the attacker's is served as long as
one of the attacker's connections is between requests, and one behind the attacker's own
address (NAT) is served through the per-address rule.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from enum import Enum

from aiohttp import web

from privpart.runtime import protocol
from privpart.runtime.addresses import address_key
from privpart.runtime.server.limits import ServerLimits

Handler = Callable[[web.Request], object]


class Phase(Enum):
    WAITING = "waiting"  # the next request's headers are due (deadline armed)
    ACTIVE = "active"  # a request is being handled: never closed by the guard
    IDLE = "idle"  # keep-alive between requests (aiohttp's keepalive_timeout closes it)


def _answer(status: str, code: str, message: str, hint: str) -> bytes:
    body = json.dumps(protocol.error_body(code, message, hint)).encode()
    retry = "Retry-After: 1\r\n" if status.startswith(("429", "503")) else ""
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {protocol.JSON_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\n{retry}Connection: close\r\n\r\n"
    )
    return head.encode() + body


BUSY = _answer(
    "503 Service Unavailable",
    "busy",
    "too many open connections",
    "retry after a short backoff (Retry-After)",
)
HEADER_TIMEOUT = _answer(
    "408 Request Timeout",
    "header_timeout",
    "request headers did not arrive in time",
    "send the whole request head at once; the connection was closed",
)


class GuardedConnection(asyncio.Protocol):
    """aiohttp's protocol for one connection, wrapped: counted from accept to close, with a
    phase the guard's middleware moves (`begin`/`end`) and a header deadline."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.loop = asyncio.get_running_loop()
        self.accepted = self.since = self.loop.time()
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.key = ""
        self.phase = Phase.WAITING
        self.got_bytes = False
        self.released = False
        self._deadline: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.key = address_key(peer[0] if isinstance(peer, tuple) and peer else None)
        if not self.guard.admit(self):
            self.release()
            transport.write(BUSY)  # type: ignore[attr-defined]
            transport.close()
            return
        self._arm(self.accepted + self.guard.limits.header_timeout_s)
        self.inner = self.guard.make_inner()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        if self.phase is Phase.IDLE and data:
            self._to(Phase.WAITING)
            self._arm(self.loop.time() + self.guard.limits.header_timeout_s)
        self.got_bytes = self.got_bytes or bool(data)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.release()
        if self.inner is not None:
            self.inner.connection_lost(exc)

    # -- phases -----------------------------------------------------------------------------
    def begin(self) -> None:
        """A request's headers are in: it is being handled."""
        self._disarm()
        self._to(Phase.ACTIVE)

    def end(self) -> None:
        """The request is answered: the connection idles until its next request."""
        self.got_bytes = False
        if self.phase is Phase.ACTIVE:
            self._to(Phase.IDLE)

    @property
    def evictable(self) -> bool:
        return self.phase is not Phase.ACTIVE and not self.released

    def close(self, answer: bytes = b"") -> None:
        """Close this connection now (it stops counting at once)."""
        self._disarm()
        self.release()
        if self.transport is not None and not self.transport.is_closing():
            if answer:
                self.transport.write(answer)
            self.transport.close()

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.guard.forget(self)

    def _to(self, phase: Phase) -> None:
        self.phase, self.since = phase, self.loop.time()

    def _arm(self, when: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_at(when, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.phase is not Phase.ACTIVE:
            self.guard.header_timeouts += 1
            self.close(HEADER_TIMEOUT if self.got_bytes else b"")


class ConnectionGuard:
    """The connections of one server (all its sites), with the limits of the module docstring."""

    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self.server: web.Server | None = None
        self.by_key: dict[str, dict[GuardedConnection, None]] = {}  # insertion-ordered sets
        self.by_transport: dict[object, GuardedConnection] = {}
        self.live = 0
        self.header_timeouts = self.evicted = self.refused = 0

    def factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        self.server = server
        return self._accept

    def _accept(self) -> asyncio.Protocol:
        return GuardedConnection(self)

    def make_inner(self) -> asyncio.Protocol:
        assert self.server is not None
        return self.server()

    def admit(self, conn: GuardedConnection) -> bool:
        """Make room for `conn` by the module docstring's rules, or refuse it."""
        limits = self.limits
        mine = self.by_key.get(conn.key, {})
        if len(mine) >= limits.max_connections_per_address and not self._evict_from(conn.key):
            self.refused += 1
            return False
        if self.live >= limits.max_connections and not self._evict_heaviest(len(mine)):
            self.refused += 1
            return False
        self.by_key.setdefault(conn.key, {})[conn] = None
        assert conn.transport is not None
        self.by_transport[conn.transport] = conn
        self.live += 1
        return True

    def forget(self, conn: GuardedConnection) -> None:
        conns = self.by_key.get(conn.key)
        if conns is None or conn not in conns:
            return
        del conns[conn]
        if not conns:
            del self.by_key[conn.key]
        self.by_transport.pop(conn.transport, None)
        self.live -= 1

    def _evict_from(self, key: str) -> bool:
        candidates = [c for c in self.by_key.get(key, {}) if c.evictable]
        if not candidates:
            return False
        min(candidates, key=lambda c: c.since).close()
        self.evicted += 1
        return True

    def _evict_heaviest(self, newcomer_holds: int) -> bool:
        """The address holding the most connections, if that is more than the newcomer's
        address holds, loses its oldest one between requests."""
        for key in sorted(self.by_key, key=lambda k: len(self.by_key[k]), reverse=True):
            if len(self.by_key[key]) <= newcomer_holds:
                return False
            if self._evict_from(key):
                return True
        return False

    def connection(self, request: web.Request) -> GuardedConnection | None:
        return self.by_transport.get(request.transport)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Outermost: marks the connection as in a request while its handler runs."""
        conn = self.connection(request)
        if conn is not None:
            conn.begin()
        try:
            return await handler(request)  # type: ignore[misc]
        finally:
            if conn is not None:
                conn.end()
