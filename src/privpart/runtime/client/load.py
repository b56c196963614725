"""A closed-loop load generator: N clients, each sending its next request when the last returns.

Every request either returns (checked: match or mismatch) or raises an error counted by code;
`lost` (started but neither) must be 0. Bounded by both a duration and a request count.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from privpart.errors import PrivpartError
from privpart.runtime.errors import RuntimeFailure

Request = Callable[[int, int], Awaitable[bool]]


@dataclass
class LoadReport:
    clients: int
    seconds: float
    started: int = 0
    ok: int = 0
    mismatched: int = 0
    errors: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.started - self.ok - self.mismatched - sum(self.errors.values())

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def to_json(self) -> dict:
        return {
            "clients": self.clients,
            "seconds": round(self.seconds, 2),
            "started": self.started,
            "ok": self.ok,
            "mismatched": self.mismatched,
            "lost": self.lost,
            "errors": dict(self.errors),
            "throughput_per_s": round(self.ok / self.seconds, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p90_ms": round(self.percentile(90), 2),
            "p99_ms": round(self.percentile(99), 2),
            "max_ms": round(self.percentile(100), 2),
        }


async def closed_loop(
    clients: int,
    seconds: float,
    request: Request,
    max_requests: int = 1_000_000,
    timeout_s: float = 30.0,
) -> LoadReport:
    """Run `request(client, i)` from `clients` concurrent loops for `seconds` (or max_requests)."""
    report = LoadReport(clients, seconds)
    deadline = time.perf_counter() + seconds
    budget = [max_requests]

    async def one_client(client: int) -> None:
        i = 0
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            report.started += 1
            start = time.perf_counter()
            try:
                matched = await asyncio.wait_for(request(client, i), timeout_s)
            except TimeoutError:
                report.errors["client_timeout"] += 1
            except RuntimeFailure as exc:
                report.errors[exc.code] += 1
            except PrivpartError:
                report.errors["error"] += 1
            else:
                report.latencies_ms.append((time.perf_counter() - start) * 1e3)
                if matched:
                    report.ok += 1
                else:
                    report.mismatched += 1
            i += 1

    begin = time.perf_counter()
    await asyncio.gather(*(one_client(c) for c in range(clients)))
    report.seconds = time.perf_counter() - begin
    return report
