"""Limits of one enclave worker (its own module: the backends and the supervisor both read it)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from privpart.hardware import SGX1_EPC_MIB


@dataclass(frozen=True)
class EnclaveConfig:
    """Limits of one enclave worker."""

    epc_mib: int = SGX1_EPC_MIB  # memory budget for the head (0: unlimited)
    max_batch: int = 4  # samples per client request
    threads: int = os.cpu_count() or 1
    max_sessions: int = 1024  # oldest sessions are dropped beyond this
    ready_timeout_s: float = 180.0
    max_restarts: int = 5  # within restart_window_s, then the supervisor gives up
    restart_window_s: float = 60.0
