"""The session table's rules (`enclave/sessions.py`) on a clock the test moves: per-address
bounds that spare used sessions, a short life for sessions never used, and at the total limit
eviction from the address holding the most, never from one holding fewer than the newcomer."""

from __future__ import annotations

import itertools

import pytest

from privpart.runtime.channel.session import Session
from privpart.runtime.enclave.sessions import SessionLimits, SessionTable
from privpart.runtime.errors import EnclaveError

KEYS = (b"k" * 32, b"i" * 12, b"c2e")
IDS = (f"{i:032x}" for i in itertools.count())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def new(table: SessionTable, client: str) -> str:
    session = Session(next(IDS), KEYS, KEYS)
    table.add(session, client)
    return session.session_id


def table(**limits: float) -> tuple[SessionTable, Clock]:
    clock = Clock()
    return SessionTable(SessionLimits(**limits), clock), clock  # type: ignore[arg-type]


def test_a_burst_from_a_shared_address_replaces_its_own_unused_sessions_first() -> None:
    """Behind one NAT address: two clients use their sessions, a third bursts attestations.
    The burst only replaces its own never-used sessions; the users keep theirs."""
    t, clock = table(total=100, per_client=4)
    users = [new(t, "198.51.100.7") for _ in range(2)]
    for sid in users:
        assert t.get(sid) is not None
    for _ in range(50):
        clock.now += 0.01
        new(t, "198.51.100.7")
    assert all(t.get(sid) is not None for sid in users)
    assert t.count("198.51.100.7") == 4


def test_at_its_limit_an_address_loses_its_least_recently_used_session() -> None:
    t, clock = table(total=100, per_client=3)
    a, b, c = (new(t, "10.0.0.1") for _ in range(3))
    for sid in (a, b, c, a):  # b is now the least recently used
        clock.now += 1
        t.get(sid)
    new(t, "10.0.0.1")
    assert t.get(b) is None and t.get(a) is not None and t.get(c) is not None


def test_sessions_never_used_expire_soon_used_ones_after_the_idle_ttl() -> None:
    t, clock = table(total=100, per_client=10, ttl_s=600, unused_ttl_s=30)
    unused, used = new(t, "10.0.0.1"), new(t, "10.0.0.2")
    t.get(used)
    clock.now += 31
    new(t, "10.0.0.3")  # an attestation expires what is due
    assert t.get(unused) is None and t.get(used) is not None and len(t) == 2
    clock.now += 601
    assert t.get(used) is None  # also refused on lookup, before any sweep


def test_a_full_table_evicts_from_the_heaviest_address_never_a_lighter_one() -> None:
    """1,100 attestations from 64 addresses fill a 1,024-session table; a client that uses
    one session, and every new address, keep being served."""
    t, clock = table(total=1024, per_client=16)
    mine = new(t, "192.0.2.1")
    t.get(mine)
    flooders = [f"203.0.113.{i}" for i in range(64)]
    for i in range(1100):
        clock.now += 0.001
        new(t, flooders[i % 64])
    assert len(t) == 1024 and t.get(mine) is not None
    for i in range(200):  # new addresses: each gets a session, from a flooder
        new(t, f"198.51.100.{i}")
    assert t.get(mine) is not None and len(t) == 1024
    assert max(t.count(a) for a in flooders) <= 16 and t.evicted >= 200


def test_a_full_table_refuses_when_no_address_holds_more_than_the_newcomer() -> None:
    t, _ = table(total=4, per_client=4)
    held = [new(t, f"10.0.0.{i}") for i in range(4)]  # one each
    new(t, "10.0.0.9")  # holds 0 < 1: takes one
    with pytest.raises(EnclaveError) as err:  # holds 1, nobody holds more: refused
        new(t, "10.0.0.9")
    assert err.value.code == "sessions_full" and err.value.status == 503
    assert sum(t.get(sid) is not None for sid in held) == 3


def test_ipv6_clients_are_counted_per_64_network() -> None:
    t, _ = table(total=100, per_client=2)
    for i in range(10):  # one host rotating through its /64
        new(t, f"2001:db8:0:1::{i + 1:x}")
    assert t.count("2001:db8:0:1::ffff") == 2 and len(t) == 2
    new(t, "::ffff:192.0.2.5")
    assert t.count("192.0.2.5") == 1  # an IPv4-mapped address is its IPv4 address
