"""The standard `Server-Timing` header (`name;dur=milliseconds, ...`): how each hop reports where
its time went, so a client can break end-to-end latency down without trusting anyone's clock."""

from __future__ import annotations


def server_timing(timings: dict[str, float]) -> str:
    return ", ".join(f"{k};dur={v:.3f}" for k, v in timings.items())


def parse_server_timing(value: str | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in (value or "").split(","):
        name, _, dur = part.strip().partition(";dur=")
        try:
            out[name] = float(dur)
        except ValueError:
            continue
    return out
