"""The enclave worker's live sessions, bounded so that no client can push out another's.

- each client (the address the host saw it connect from) holds at most `per_client` sessions:
  its next attestation drops *its own* oldest session, never anyone else's;
- sessions unused for `ttl_s` expire;
- when `total` live sessions exist, a new attestation is refused (503 `sessions_full`, retry
  later) instead of evicting a live session of another client.

An attestation flood from one address therefore costs that address its own sessions and, at
worst, makes new clients wait; it cannot end a well-behaved client's session. Not thread-safe:
the worker calls it under its session lock.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from privpart.runtime.channel.session import Session
from privpart.runtime.errors import EnclaveError


@dataclass(frozen=True)
class SessionLimits:
    total: int = 1024
    per_client: int = 16
    ttl_s: float = 600.0


@dataclass
class _Entry:
    session: Session
    client: str
    used: float = field(default_factory=time.monotonic)


class SessionTable:
    def __init__(self, limits: SessionLimits) -> None:
        self.limits = limits
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, session_id: object) -> Session | None:
        entry = self._entries.get(session_id) if isinstance(session_id, str) else None
        if entry is None:
            return None
        entry.used = time.monotonic()
        self._entries.move_to_end(session_id)  # type: ignore[arg-type]
        return entry.session

    def drop(self, session_id: object) -> None:
        if isinstance(session_id, str):
            self._entries.pop(session_id, None)

    def _expire(self, now: float) -> None:
        while self._entries:
            sid, entry = next(iter(self._entries.items()))
            if now - entry.used <= self.limits.ttl_s:
                return
            del self._entries[sid]

    def add(self, session: Session, client: str) -> None:
        """Hold a new session for `client`, within the limits (module docstring)."""
        now = time.monotonic()
        self._expire(now)
        mine = [sid for sid, e in self._entries.items() if e.client == client]
        for sid in mine[: max(0, len(mine) - self.limits.per_client + 1)]:
            del self._entries[sid]  # this client's own oldest
        if len(self._entries) >= self.limits.total:
            raise EnclaveError(
                "sessions_full",
                f"the enclave holds {len(self._entries)} live sessions, its limit",
                "retry in a moment (Retry-After); idle sessions expire",
            )
        self._entries[session.session_id] = _Entry(session, client, now)

    def count(self, client: str) -> int:
        return sum(1 for e in self._entries.values() if e.client == client)
