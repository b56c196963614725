"""`process` backend (default, runs anywhere): the head in a separate OS process. Simulated.

What is real: the head runs in its own process, started from a sealed file whose key the
supervisor releases only for the expected measurement; the worker re-measures what it decrypted
and refuses to serve anything else; its address space is capped at the enclave budget
(`budget.py`); every session's keys live only in the worker; quotes are Ed25519-signed.

What is simulated: the supervisor plays the CPU. It holds the platform signing key and the
sealing root in a folder on the host, and a process boundary is not a hardware boundary: root on
the host can read the worker's memory. Every quote and report therefore says `simulated: true`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from privpart.runtime.enclave.base import TEE_BACKENDS, TEEBackend
from privpart.runtime.enclave.budget import malloc_env


@TEE_BACKENDS.register("process")
class ProcessBackend(TEEBackend):
    name = "process"
    simulated = True

    def check_available(self) -> None:
        """A Python interpreter is all it needs."""

    def worker_command(self, sealed: Path) -> tuple[list[str], dict[str, str], Path | None]:
        env = {
            **malloc_env(self.config.epc_mib << 20),  # one arena, freed activations reused
            "OMP_NUM_THREADS": str(self.config.threads),
        }
        return [sys.executable, *self.worker_args(sealed)], env, None
