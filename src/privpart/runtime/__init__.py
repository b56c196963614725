"""Split-inference runtime: run a chosen cut for real.

- `protocol`: endpoints, media types, the error format and statuses, defined once;
- `enclave/`: TEE backends (`process`, simulated; `gramine`, SGX; `tdx`, a TDX VM) that measure,
  seal and launch the head worker, which makes its own quotes (`quoting.py`);
- `channel/`: one quote envelope, its verification against the client's policy (DCAP via
  dcap-qvl, or simulated evidence), the X25519 + HKDF key exchange bound to it, and the AES-GCM
  record layer between the client and the enclave;
- `server/`: the tail server (handlers shared by aiohttp and Ray Serve, dynamic batching,
  backpressure, limits, metrics, graceful drain);
- `client/`: enclave-mode and device-mode clients, image loading and a load generator;
- `frames`: the binary tensor frame every hop speaks; `head`: measurement and head rebuilding;
  `tls`: the tail's certificate pin.

This package imports nothing heavy at import time, so the enclave worker starts lean.
"""

from privpart.runtime.version import RUNTIME_VERSION

__all__ = ["RUNTIME_VERSION"]
