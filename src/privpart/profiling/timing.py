"""Wall-clock latency of a module on one device: warm-up, repeats, median and spread.

CPU runs pin the intra-op thread count (the trusted side stands in for an enclave with few
threads); CUDA runs are timed with CUDA events after a synchronize, so queued kernels count.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Timing:
    """Milliseconds per call: median, 10th/90th percentile, and how many calls were timed."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int
    device: str
    threads: int | None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Timing:
        return cls(**d)

    @classmethod
    def zero(cls, device: str = "none") -> Timing:
        return cls(0.0, 0.0, 0.0, 0, device, None)


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _quantiles(samples: list[float]) -> tuple[float, float, float]:
    s = sorted(samples)
    pick = lambda q: s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]  # noqa: E731
    return statistics.median(s), pick(0.1), pick(0.9)


@torch.no_grad()
def time_module(
    module: nn.Module,
    x: torch.Tensor,
    device: str = "cpu",
    threads: int | None = None,
    warmup: int = 3,
    repeats: int = 15,
    max_seconds: float = 20.0,
) -> Timing:
    """Median latency of `module(x)`; stops early (>= 3 timed calls) past `max_seconds`."""
    module = module.eval().to(device)
    x = x.to(device)
    samples: list[float] = []
    cuda = device.startswith("cuda")
    with cpu_threads(threads if not cuda else None):
        for _ in range(warmup):
            module(x)
        if cuda:
            torch.cuda.synchronize()
        start_all = time.perf_counter()
        for _ in range(repeats):
            if cuda:
                begin, end = (
                    torch.cuda.Event(enable_timing=True),
                    torch.cuda.Event(enable_timing=True),
                )
                begin.record()
                module(x)
                end.record()
                torch.cuda.synchronize()
                samples.append(begin.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                module(x)
                samples.append((time.perf_counter() - t0) * 1000)
            if len(samples) >= 3 and time.perf_counter() - start_all > max_seconds:
                break
    med, p10, p90 = _quantiles(samples)
    return Timing(
        med, p10, p90, len(samples), device, None if cuda else (threads or torch.get_num_threads())
    )
