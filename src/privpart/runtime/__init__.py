"""Split-inference runtime: run a chosen cut for real.

- `enclave/`: TEE backends (`process`, simulated; `gramine`, SGX) that measure, seal, launch and
  attest the head worker;
- `channel/`: attestation quotes, the X25519 + HKDF key exchange bound to them, and the AES-GCM
  record layer between the client and the enclave;
- `server/`: the tail server (HTTP, dynamic batching, backpressure, metrics, graceful drain);
- `client/`: enclave-mode and device-mode clients, image loading and a load generator;
- `frames`: the binary tensor frame every hop speaks; `head`: measurement and head rebuilding.

This package imports nothing heavy at import time, so the enclave worker starts lean.
"""

from privpart.runtime.version import RUNTIME_VERSION

__all__ = ["RUNTIME_VERSION"]
