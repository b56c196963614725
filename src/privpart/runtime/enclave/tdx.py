"""`tdx` backend: the head in an Intel TDX confidential VM, with unmodified PyTorch.

In TDX the whole VM is the trust domain: the hypervisor and the cloud operator are outside it,
the `privpart enclave` host process and the worker are both inside. The worker runs as a plain
process (as in the `process` backend) and gets its quotes from the Linux configfs-tsm interface
(`quoting.TsmSource`: `/sys/kernel/config/tsm/report`), which the client verifies with the same
code as SGX quotes (dcap-qvl, `channel/dcap.py`), pinning MRTD (the TD's initial image) and, to
cover the kernel, command line and root filesystem that run privpart, RTMR0..3.

What the pins mean is the deployer's to establish: MRTD and RTMRs identify the firmware, kernel
and boot chain of the TD image; the image must measure (e.g. dm-verity root filesystem) the
Python environment and the sealed head, or anyone with root in the TD could change them
unnoticed. The sealing root lives in the TD's own disk, which should be encrypted.
"""

from __future__ import annotations

import sys
from pathlib import Path

from privpart.errors import PrivpartError
from privpart.runtime.enclave.base import TEE_BACKENDS, EnclaveConfig, TEEBackend
from privpart.runtime.enclave.budget import malloc_env
from privpart.runtime.enclave.platform import PlatformKeys
from privpart.runtime.enclave.quoting import TSM_DIR


@TEE_BACKENDS.register("tdx")
class TdxBackend(TEEBackend):
    name = "tdx"
    simulated = False
    quote_source = "tdx"

    def __init__(
        self,
        platform: PlatformKeys,
        config: EnclaveConfig | None = None,
        tsm_dir: Path = TSM_DIR,
        tsm_entry: str | None = None,
    ) -> None:
        super().__init__(platform, config)
        self.tsm_dir = tsm_dir
        self.tsm_entry = tsm_entry  # the report entry's name (default: privpart-<worker pid>)

    def check_available(self) -> None:
        reports = self.tsm_dir / "report"
        if not reports.is_dir():
            raise PrivpartError(
                f"the tdx backend is not available on this machine: {reports} does not exist "
                "(not a TDX guest, or configfs-tsm missing)",
                "run inside an Intel TDX confidential VM with Linux >= 6.7 and configfs mounted, "
                "or use --backend process (simulated: no confidentiality against the host)",
            )

    def worker_command(
        self, sealed: Path, measurement: str
    ) -> tuple[list[str], dict[str, str], Path | None]:
        env = {
            **malloc_env(self.config.epc_mib << 20),
            "OMP_NUM_THREADS": str(self.config.threads),
        }
        argv = [*self.worker_args(sealed, measurement), "--tsm-dir", str(self.tsm_dir)]
        if self.tsm_entry:
            argv += ["--tsm-entry", self.tsm_entry]
        return [sys.executable, *argv], env, None
