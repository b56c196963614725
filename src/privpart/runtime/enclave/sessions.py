"""The enclave worker's live sessions, bounded so that no client can push out another's.

Clients are counted by address (`addresses.address_key`: an IPv4 address, an IPv6 /64).

- **per address**: one address holds at most `per_client` sessions; its next attestation
  drops one of *its own*: a session never used first (oldest), else its least recently used.
  A burst of attestations from behind a shared address (NAT) therefore replaces the burst's
  own unused sessions, not the sessions other clients there are using;
- **expiry**: a session never used (no authenticated request after the handshake) expires
  `unused_ttl_s` after it was made; a used one `ttl_s` after its last request;
- **in total**: at `total` live sessions, the address holding the most sessions gives one up
  (never used first, else least recently used) if it holds more than the newcomer's address;
  otherwise the attestation is refused (503 `sessions_full`). A flood from many addresses
  thus costs the flooders their own sessions, and a newcomer is refused only when every
  address holds at most as many sessions as its own: then no eviction would be fair.

What an outsider cannot do: end a session of an address that holds fewer sessions than the
outsider's own, whatever it sends (short of reading the session id off the wire: TLS).
Not thread-safe: the worker calls it under its session lock.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from privpart.runtime.addresses import address_key
from privpart.runtime.channel.session import Session
from privpart.runtime.errors import EnclaveError


@dataclass(frozen=True)
class SessionLimits:
    total: int = 1024
    per_client: int = 16
    ttl_s: float = 600.0  # after the last request
    unused_ttl_s: float = 30.0  # after the handshake, for a session never used


@dataclass
class _Entry:
    session: Session
    client: str  # address key
    used: float  # monotonic time of the handshake, then of the last request
    ever_used: bool = False


@dataclass
class _Client:
    """One address's sessions: never used (oldest first) and used (least recent first)."""

    unused: OrderedDict[str, None] = field(default_factory=OrderedDict)
    used: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self.unused) + len(self.used)

    def victim(self) -> str:
        return next(iter(self.unused or self.used))


class SessionTable:
    def __init__(self, limits: SessionLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._unused: OrderedDict[str, None] = OrderedDict()  # by handshake time
        self._used: OrderedDict[str, None] = OrderedDict()  # least recently used first
        self._clients: dict[str, _Client] = {}
        self.evicted = 0  # by the total limit (another address's session)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, session_id: object) -> Session | None:
        """The session, marked used now (a request for it arrived)."""
        entry = self._entries.get(session_id) if isinstance(session_id, str) else None
        if entry is None:
            return None
        sid: str = session_id  # type: ignore[assignment]
        now = self.clock()
        if self._expired(entry, now):
            self.drop(sid)
            return None
        mine = self._clients[entry.client]
        if not entry.ever_used:
            entry.ever_used = True
            del self._unused[sid], mine.unused[sid]
        entry.used = now
        self._used[sid] = mine.used[sid] = None
        self._used.move_to_end(sid)
        mine.used.move_to_end(sid)
        return entry.session

    def drop(self, session_id: object) -> None:
        entry = self._entries.pop(session_id, None) if isinstance(session_id, str) else None
        if entry is None:
            return
        sid: str = session_id  # type: ignore[assignment]
        mine = self._clients[entry.client]
        for table in (self._unused, self._used, mine.unused, mine.used):
            table.pop(sid, None)
        if not mine:
            del self._clients[entry.client]

    def _expired(self, entry: _Entry, now: float) -> bool:
        ttl = self.limits.ttl_s if entry.ever_used else self.limits.unused_ttl_s
        return now - entry.used > ttl

    def _expire(self, now: float) -> None:
        for table in (self._unused, self._used):  # each ordered by the time it expires from
            while table:
                sid = next(iter(table))
                if not self._expired(self._entries[sid], now):
                    break
                self.drop(sid)

    def _evict_heaviest(self, newcomer_holds: int) -> bool:
        if not self._clients:
            return False
        key = max(self._clients, key=lambda k: len(self._clients[k]))
        if len(self._clients[key]) <= newcomer_holds:
            return False
        self.drop(self._clients[key].victim())
        self.evicted += 1
        return True

    def add(self, session: Session, client: str) -> None:
        """Hold a new session for the address `client`, within the limits (module docstring)."""
        now = self.clock()
        self._expire(now)
        key = address_key(client)
        mine = self._clients.get(key)
        while mine is not None and len(mine) >= self.limits.per_client:
            self.drop(mine.victim())  # this address's own: never used first, else LRU
            mine = self._clients.get(key)
        holds = len(mine) if mine is not None else 0
        if len(self._entries) >= self.limits.total and not self._evict_heaviest(holds):
            raise EnclaveError(
                "sessions_full",
                f"the enclave holds {len(self._entries)} live sessions, its limit, and no "
                "address holds more than yours",
                "retry in a moment (Retry-After); sessions never used expire within "
                f"{self.limits.unused_ttl_s:g} s",
            )
        sid = session.session_id
        self._entries[sid] = _Entry(session, key, now)
        self._unused[sid] = None
        self._clients.setdefault(key, _Client()).unused[sid] = None

    def count(self, client: str) -> int:
        mine = self._clients.get(address_key(client))
        return len(mine) if mine is not None else 0
