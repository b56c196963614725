"""Facts about the hardware privpart plans for, written once (imported by profiling, selection,
the CLI and the enclave runtime alike; this module imports nothing heavy)."""

from __future__ import annotations

SGX1_EPC_MIB = 93  # usable EPC of SGX1 parts (128 MiB minus metadata)
SGX1_EPC_BYTES = SGX1_EPC_MIB << 20
