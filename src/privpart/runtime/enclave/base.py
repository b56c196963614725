"""The TEE backend contract: measure, seal/unseal, launch, quote. Backends register by name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from privpart.registry import Registry
from privpart.runtime.channel.attestation import sign_quote
from privpart.runtime.enclave.config import EnclaveConfig
from privpart.runtime.enclave.platform import PlatformKeys
from privpart.runtime.enclave.sealed import read_header, unseal_bytes, write_sealed
from privpart.runtime.errors import EnclaveError
from privpart.runtime.head import HeadInfo, SplitHead, head_state, measure_head
from privpart.runtime.version import RUNTIME_VERSION


class TEEBackend(ABC):
    """One way to run the head isolated from the host, with sealed weights and signed quotes."""

    name: ClassVar[str]
    simulated: ClassVar[bool]

    def __init__(self, platform: PlatformKeys, config: EnclaveConfig | None = None) -> None:
        self.platform = platform
        self.config = config or EnclaveConfig()

    # identity and sealing -------------------------------------------------------------------
    def measure(self, split: SplitHead) -> str:
        return measure_head(split.head, split.info.input_shape)

    def sealing_key(self, measurement: str) -> bytes:
        return self.platform.sealing_key(measurement)

    def seal(self, split: SplitHead, out_dir: Path) -> Path:
        """Write the head's weights, encrypted for its measurement, to `out_dir`."""
        m = self.measure(split)
        path = out_dir / f"head-{split.info.cut.name}-{m[:16]}.sealed"
        return write_sealed(path, split.info, head_state(split.head), self.sealing_key(m))

    def unseal(self, path: Path) -> tuple[HeadInfo, dict[str, Any]]:
        blob = path.read_bytes()
        info, _, _ = read_header(blob)
        return unseal_bytes(blob, self.sealing_key(info.measurement))

    def release_key(self, claimed: str, expected: str) -> bytes:
        """The sealing key, only for a worker whose measurement is the expected one."""
        if claimed != expected:
            raise EnclaveError(
                "wrong_measurement",
                f"worker loaded head {claimed[:16]}..., expected {expected[:16]}...: key withheld",
                "seal the head you mean to serve (privpart enclave --checkpoint ... --cut ...)",
                status=500,
            )
        return self.sealing_key(expected)

    # launching and attesting ----------------------------------------------------------------
    @abstractmethod
    def check_available(self) -> None:
        """Raise a PrivpartError saying what is missing if this machine cannot run the backend."""

    @abstractmethod
    def worker_command(self, sealed: Path) -> tuple[list[str], dict[str, str], Path | None]:
        """(argv, extra environment, working directory) that start the worker for `sealed`."""

    def worker_args(self, sealed: Path) -> list[str]:
        c = self.config
        return [
            "-m",
            "privpart.runtime.enclave.worker",
            "--sealed",
            str(sealed),
            "--epc-bytes",
            str(c.epc_mib << 20),
            "--max-batch",
            str(c.max_batch),
            "--threads",
            str(c.threads),
            "--max-sessions",
            str(c.max_sessions),
            "--quote-source",
            self.quote_source,
        ]

    quote_source: ClassVar[str] = "platform"

    def quote(self, measurement: str, report_data: bytes, evidence: dict[str, Any]) -> dict:
        """A signed report that this measurement produced `report_data` (the transcript hash)."""
        return sign_quote(
            self.platform.signing,
            backend=self.name,
            simulated=self.simulated,
            measurement=measurement,
            report_data=report_data,
            runtime_version=RUNTIME_VERSION,
        )

    def launch(self, sealed: Path, expected_measurement: str):  # noqa: ANN201
        """A supervisor (not yet started) that runs and restarts the worker for `sealed`."""
        from privpart.runtime.enclave.supervisor import WorkerSupervisor

        self.check_available()
        return WorkerSupervisor(self, sealed, expected_measurement)


TEE_BACKENDS: Registry[type[TEEBackend]] = Registry("TEE backend")
