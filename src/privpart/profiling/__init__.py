"""Per-cut latency and memory: trusted head, feature transfer, accelerator tail."""

from privpart.profiling.memory import peak_memory_bytes
from privpart.profiling.profiler import (
    CutProfile,
    ProfileConfig,
    ProfileResult,
    profile_cut,
    profile_cuts,
    transfer_ms,
)
from privpart.profiling.timing import Timing, time_module

__all__ = [
    "CutProfile",
    "ProfileConfig",
    "ProfileResult",
    "Timing",
    "peak_memory_bytes",
    "profile_cut",
    "profile_cuts",
    "time_module",
    "transfer_ms",
]
