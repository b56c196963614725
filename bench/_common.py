"""Shared bits of the benchmarks: where results go and what machine produced them."""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import torch

RESULTS = Path(__file__).parent / "results"


def cpu_ticks() -> list[int] | None:
    """The aggregate CPU tick counters of /proc/stat (None where there is none)."""
    try:
        return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None


_START_TICKS = cpu_ticks()


def cpu_steal_percent() -> float | None:
    """Share of CPU time the hypervisor took from this VM since the bench started (/proc/stat
    `steal`): a noisy neighbour slows every timing here, so results say how much there was."""
    return steal_since(_START_TICKS)


def steal_since(start: list[int] | None) -> float | None:
    """Steal share since `start` (from `cpu_ticks`): for a bench that times parts separately."""
    now = cpu_ticks()
    if not now or not start or len(now) < 8:
        return None
    delta = [b - a for a, b in zip(start, now, strict=False)]
    total = sum(delta[:8])
    return 100.0 * delta[7] / total if total else None


def _ratios(values: Sequence[float], base: Sequence[float]) -> list[float]:
    return [a / b for a, b in zip(values, base, strict=True)]


def paired_ratio(values: Sequence[float], base: Sequence[float]) -> float:
    """Median of the per-round ratios values[i] / base[i]: taken round by round, so the
    machine's drift between rounds cancels."""
    return round(statistics.median(_ratios(values, base)), 4)


def paired_ratio_ci(
    values: Sequence[float], base: Sequence[float], level: float = 0.95, resamples: int = 4000
) -> tuple[float, float]:
    """Bootstrap interval of `paired_ratio`: rounds resampled with replacement (seeded, so a
    rerun on the same samples prints the same interval). On a host this noisy it says whether a
    ratio misses a target by more than the noise."""
    ratios = _ratios(values, base)
    rng = random.Random(0)
    medians = sorted(
        statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples)
    )
    tail = (1 - level) / 2
    lo, hi = medians[int(tail * resamples)], medians[int((1 - tail) * resamples) - 1]
    return round(lo, 4), round(hi, 4)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write(name: str, data: dict, markdown: str) -> None:
    steal = cpu_steal_percent()
    data = {**data, "cpu_steal_percent": steal}
    if steal is not None:
        markdown += f"\nCPU steal during the run (hypervisor, /proc/stat): {steal:.1f}%\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown)
    print(markdown)


@dataclass(frozen=True)
class ChildRun:
    """A command run to its end in a child process."""

    returncode: int
    wall_seconds: float
    # that child's own peak (its process tree), not the largest child yet; Linux counts the
    # parent's RSS at fork into it, so a child smaller than this process reads as this size
    peak_rss_mib: float


def run_child(cmd: Sequence[str], stdout: IO | None = None, env: dict | None = None) -> ChildRun:
    """Run `cmd`, waiting with wait4 so the peak RSS is this child's alone."""
    t = time.perf_counter()
    child = subprocess.Popen(list(cmd), stdout=stdout, stderr=subprocess.STDOUT if stdout else None,
                             env=env)  # fmt: skip
    _, status, usage = os.wait4(child.pid, 0)
    return ChildRun(os.waitstatus_to_exitcode(status), time.perf_counter() - t,
                    usage.ru_maxrss / 1024)  # fmt: skip  # KiB on Linux


def plural(n: int, word: str) -> str:
    """`n` and `word`, with an s unless `n` is one (report text)."""
    return f"{n} {word}{'' if n == 1 else 's'}"
