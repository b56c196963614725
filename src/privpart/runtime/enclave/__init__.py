"""TEE backends for the head: `process` (simulated, runs anywhere), `gramine` (Intel SGX) and
`tdx` (an Intel TDX confidential VM)."""

from privpart.runtime.enclave import gramine as _gramine  # noqa: F401  (registers)
from privpart.runtime.enclave import process as _process  # noqa: F401  (registers)
from privpart.runtime.enclave import tdx as _tdx  # noqa: F401  (registers)
from privpart.runtime.enclave.base import TEE_BACKENDS, EnclaveConfig, TEEBackend
from privpart.runtime.enclave.platform import PlatformKeys, default_platform_dir

__all__ = ["TEE_BACKENDS", "EnclaveConfig", "PlatformKeys", "TEEBackend", "default_platform_dir"]
