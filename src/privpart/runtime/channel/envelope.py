"""The one quote envelope every backend answers with, and the report data it must carry.

Wire form (JSON, inside the `/v1/attest` answer)::

    {"format": "privpart-quote/2", "backend": "process" | "gramine" | "tdx",
     "evidence_type": "simulated-ed25519" | "sgx-dcap" | "tdx-dcap",
     "evidence": base64(the quote), "measurement": head measurement (hex),
     "runtime_version": "privpart-runtime/..."}

`evidence` is what the TEE produced, untouched by the host: an Intel DCAP quote (SGX v3, TDX v4)
or, for the simulated platform, a signed body (`simulated.py`). `measurement` and
`runtime_version` are claims the client compares first for a clear error; what binds them is
the report data: the quote's 64-byte report-data field must equal `report_data(T)`, the
SHA-256 transcript hash `T` of this handshake (which covers the measurement) followed by 32 zero
bytes. SGX REPORTDATA and TDX REPORTDATA are both 64 bytes, so one rule serves both.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from privpart.runtime.errors import AttestationError

FORMAT = "privpart-quote/2"
REPORT_DATA_BYTES = 64
SIMULATED = "simulated-ed25519"
SGX_DCAP = "sgx-dcap"
TDX_DCAP = "tdx-dcap"


def report_data(transcript: bytes) -> bytes:
    """The 64-byte report data a quote for this handshake carries: T || 32 zero bytes."""
    if len(transcript) != 32:
        raise ValueError("the transcript hash is 32 bytes (SHA-256)")
    return transcript + bytes(REPORT_DATA_BYTES - len(transcript))


def _bad(message: str) -> AttestationError:
    hint = "the enclave host is not privpart, or it altered the quote"
    return AttestationError("bad_quote", message, hint)


@dataclass(frozen=True)
class QuoteEnvelope:
    backend: str
    evidence_type: str
    evidence: bytes
    measurement: str
    runtime_version: str
    format: str = FORMAT

    def to_json(self) -> dict[str, str]:
        return {
            "format": self.format,
            "backend": self.backend,
            "evidence_type": self.evidence_type,
            "evidence": base64.b64encode(self.evidence).decode(),
            "measurement": self.measurement,
            "runtime_version": self.runtime_version,
        }

    @classmethod
    def from_json(cls, obj: Any) -> QuoteEnvelope:
        """The envelope in `obj`, or `AttestationError("bad_quote")` saying what is wrong."""
        if not isinstance(obj, dict):
            raise _bad("quote is not a JSON object")
        fields = (
            "format",
            "backend",
            "evidence_type",
            "evidence",
            "measurement",
            "runtime_version",
        )
        missing = [f for f in fields if not isinstance(obj.get(f), str)]
        if missing:
            raise _bad(f"quote lacks {', '.join(missing)}")
        if obj["format"] != FORMAT:
            raise AttestationError(
                "bad_quote",
                f"unknown quote format {obj['format']!r} (this client reads {FORMAT})",
                "run the same privpart version on the client and the enclave",
            )
        try:
            evidence = base64.b64decode(obj["evidence"], validate=True)
        except (binascii.Error, ValueError):
            raise _bad("quote evidence is not base64") from None
        return cls(
            backend=obj["backend"],
            evidence_type=obj["evidence_type"],
            evidence=evidence,
            measurement=obj["measurement"],
            runtime_version=obj["runtime_version"],
        )
