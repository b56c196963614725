"""Keep idle OpenMP threads from spinning in processes that take turns on the same cores.

A split inference alternates between processes: the client (or enclave worker) runs the head
while the tail server waits, then the other way round. PyTorch's CPU kernels run on GNU OpenMP,
whose worker threads busy-wait after every parallel region (`GOMP_SPINCOUNT`, 300,000 spins by
default: tens of milliseconds). On a shared host that spinning steals the cores the *other*
process is computing on: measured here (2 cores, ResNet-50 @224 split at layer2, head and tail in
two processes, paired rounds), head + tail compute 9-13 % slower than in one process; with
30,000 spins 2-4 % slower, while a single process loses ~1 % (`OMP_WAIT_POLICY=PASSIVE`
instead costs ~10 % within one process: every kernel then wakes sleeping threads).

libgomp reads the setting once, when torch loads it, so it must be in the environment before
`import torch`: the runtime CLI commands set it first thing, and the enclave host passes it to
the worker it spawns. A user's own choice (`GOMP_SPINCOUNT` or `OMP_WAIT_POLICY` already set)
always wins. This module imports nothing heavy.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

IDLE_SPINS = 30_000
USER_KNOBS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def idle_spin_env(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The variables to add for a process that shares its cores ({} if the user chose)."""
    environ = os.environ if environ is None else environ
    if any(k in environ for k in USER_KNOBS):
        return {}
    return {"GOMP_SPINCOUNT": str(IDLE_SPINS)}


def user_openmp(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The OpenMP wait settings the environment chose itself."""
    environ = os.environ if environ is None else environ
    return {k: environ[k] for k in USER_KNOBS if k in environ}


def runtime_openmp(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """What a runtime process started from this environment runs with (results record it)."""
    return user_openmp(environ) or idle_spin_env(environ)


def quiet_idle_threads(environ: MutableMapping[str, str] | None = None) -> bool:
    """Apply `idle_spin_env` to this process; True when it can still take effect (torch not
    yet imported) and was not overridden by the user."""
    environ = os.environ if environ is None else environ
    extra = idle_spin_env(environ)
    environ.update(extra)
    return bool(extra) and "torch" not in sys.modules
