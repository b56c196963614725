"""The TEE backend contract: measure, seal, and start a worker that quotes for itself.

A backend says how to start the worker (`worker_command`) and which quote source it uses inside
the TEE (`quote_source`, `quoting.py`); the supervisor (`supervisor.launch`) runs it. The
backend never signs or produces quotes on the host: evidence comes out of the worker, and the
client verifies it through one path (`channel/attestation.py`). Backends register by name.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from privpart.errors import PrivpartError
from privpart.hardware import SGX1_EPC_MIB
from privpart.registry import Registry
from privpart.runtime.enclave.platform import PlatformKeys
from privpart.runtime.enclave.sealed import write_sealed
from privpart.runtime.head import SplitHead, head_state, measure_head, measure_tail


def tail_weights_path(sealed: Path) -> Path:
    """Where the tail's weights for spot checks lie, next to the sealed head they belong to."""
    return sealed.with_name(f"{sealed.stem}.tail.safetensors")


@dataclass(frozen=True)
class EnclaveConfig:
    """Limits of one enclave worker."""

    epc_mib: int = SGX1_EPC_MIB  # memory budget for the head (0: unlimited)
    max_batch: int = 4  # samples per client request
    threads: int = os.cpu_count() or 1
    max_sessions: int = 1024  # live sessions in all; beyond, attestations wait (503)
    max_sessions_per_client: int = 16  # a client's next attestation drops its own oldest
    session_ttl_s: float = 600.0  # sessions expire this long after their last request
    session_unused_ttl_s: float = 30.0  # and this long after the handshake if never used
    ready_timeout_s: float = 180.0
    max_restarts: int = 5  # within restart_window_s, then the supervisor gives up
    restart_window_s: float = 60.0
    tail_pin: str = ""  # SHA-256 (hex) of the tail's TLS certificate; "" = plain HTTP allowed
    trust_code: bool = False  # serve a head whose architecture is a user's Python file
    verify_tail: float = 0.0  # fraction of requests whose tail the worker recomputes (integrity)
    isv_prod_id: int = 0  # SGX: enters the SIGSTRUCT (clients may pin MRSIGNER + product id)
    isv_svn: int = 0


class TEEBackend(ABC):
    """One way to run the head isolated from the host, with sealed weights and its own quotes."""

    name: ClassVar[str]
    simulated: ClassVar[bool]
    quote_source: ClassVar[str]

    def __init__(self, platform: PlatformKeys, config: EnclaveConfig | None = None) -> None:
        self.platform = platform
        self.config = config or EnclaveConfig()
        self.tail_measurement = ""  # set by `seal` when the worker verifies the tail

    def measure(self, split: SplitHead) -> str:
        return measure_head(split.head, split.info.input_shape)

    def seal(self, split: SplitHead, out_dir: Path) -> Path:
        """Write the head's weights, encrypted for its measurement, to `out_dir`."""
        m = self.measure(split)
        path = out_dir / f"head-{split.info.cut.name}-{m[:16]}.sealed"
        sealed = write_sealed(
            path, split.info, head_state(split.head), self.platform.sealing_key(m)
        )
        if self.config.verify_tail > 0:
            # Not secret (the tail server holds the same weights) but integrity-checked: the
            # worker re-measures them against the tail measurement in its arguments.
            from safetensors.torch import save_file

            save_file(head_state(split.tail), str(tail_weights_path(sealed)))
            self.tail_measurement = measure_tail(split)
        return sealed

    @abstractmethod
    def check_available(self) -> None:
        """Raise a PrivpartError saying what is missing if this machine cannot run the backend."""

    @abstractmethod
    def worker_command(
        self, sealed: Path, measurement: str
    ) -> tuple[list[str], dict[str, str], Path | None]:
        """(argv, extra environment, working directory) that start the worker for `sealed`."""

    def worker_args(
        self, sealed: Path, measurement: str, platform_dir: Path | None = None
    ) -> list[str]:
        """The worker's arguments; under Gramine they are fixed in the measured manifest."""
        c = self.config
        args = [
            "-m",
            "privpart.runtime.enclave.worker",
            "--sealed",
            str(sealed),
            "--expect-measurement",
            measurement,
            "--platform-dir",
            str(platform_dir or self.platform.directory),
            "--backend",
            self.name,
            "--quote-source",
            self.quote_source,
            "--epc-bytes",
            str(c.epc_mib << 20),
            "--max-batch",
            str(c.max_batch),
            "--threads",
            str(c.threads),
            "--max-sessions",
            str(c.max_sessions),
            "--max-sessions-per-client",
            str(c.max_sessions_per_client),
            "--session-ttl",
            f"{c.session_ttl_s:g}",
            "--session-unused-ttl",
            f"{c.session_unused_ttl_s:g}",
        ]
        if c.tail_pin:
            args += ["--tail-pin", c.tail_pin]
        if c.verify_tail > 0:
            if not self.tail_measurement:
                raise PrivpartError(
                    "the enclave verifies the tail, but no tail was written with the head",
                    "seal the head with this backend first (TEEBackend.seal writes both)",
                )
            args += [
                "--verify-tail",
                f"{c.verify_tail:g}",
                "--expect-tail-measurement",
                self.tail_measurement,
                "--tail-weights",
                str(tail_weights_path(sealed)),
            ]
        if c.trust_code:
            args.append("--trust-code")
        return args


TEE_BACKENDS: Registry[type[TEEBackend]] = Registry("TEE backend")
