"""`process` backend (default, runs anywhere): the head in a separate OS process. Simulated.

What is real: the head runs in its own process with its own memory cap (`budget.py`); its
weights are sealed at rest and the worker derives the key for the expected measurement only;
the worker re-measures what it decrypted and refuses to serve anything else; the worker makes
its own attestation key and quotes (`channel/simulated.py`), and every session's keys live only
in the worker: the host process relays bytes it cannot read.

What is simulated: the platform key and the sealing root are files of the host's user, and a
process boundary is not a hardware boundary: root on the host can read the worker's memory, and
whoever can read the platform folder can certify a key of their own. There is **no
confidentiality against the host**. Every quote, report and CLI line says `simulated: true`,
and clients refuse it unless told `--allow-simulated`.
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
    quote_source = "simulated"

    def check_available(self) -> None:
        """A Python interpreter is all it needs."""

    def worker_command(
        self, sealed: Path, measurement: str
    ) -> tuple[list[str], dict[str, str], Path | None]:
        env = {
            **malloc_env(self.config.epc_mib << 20),  # one arena, freed activations reused
            "OMP_NUM_THREADS": str(self.config.threads),
        }
        return [sys.executable, *self.worker_args(sealed, measurement)], env, None
