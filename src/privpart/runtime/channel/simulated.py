"""Simulated evidence (the `process` backend): the structure of hardware attestation, with
software keys, and no confidentiality against the host.

As in SGX, where the quoting enclave's attestation key is certified up to Intel's root and
signs each quote, the worker (the enclave) generates a fresh Ed25519 attestation key at start-up
and keeps it in its own memory; the simulated platform key - the stand-in for the CPU and Intel,
pinned by clients - certifies it once for the head's measurement; each quote is signed by the
attestation key. The host process never holds a signing key: it relays the evidence.

What it cannot give: the platform key and the worker are files and a process of the host's user,
so whoever controls the host can read the worker's memory or sign with the platform key. A
client accepts this evidence only when told to (`allow_simulated`), and says so.

Evidence bytes: canonical JSON `{"platform_key", "certificate", "certificate_signature",
"quote", "quote_signature"}` (hex keys, base64 bodies and signatures); the certificate body is
`{format, attestation_key, measurement, runtime_version, issued_at}`, the quote body
`{format, simulated: true, attestation_key, measurement, report_data (64 bytes hex),
runtime_version, issued_at}`.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from privpart.runtime.channel.policy import VerificationPolicy
from privpart.runtime.errors import AttestationError

CERT_FORMAT = "privpart-sim-attestation-key/1"
QUOTE_FORMAT = "privpart-sim-quote/1"
REFUSE = "do not send data to this enclave host"


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def fingerprint(raw: bytes) -> str:
    """Short printable name of a platform public key."""
    return raw.hex()[:16]


def _canonical(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class SimulatedQuoter:
    """Inside the worker: a fresh attestation key, certified once by the platform key."""

    def __init__(
        self, platform_key: Ed25519PrivateKey, measurement: str, runtime_version: str
    ) -> None:
        self._key = Ed25519PrivateKey.generate()
        self.attestation_key = public_bytes(self._key.public_key()).hex()
        self.platform_key = public_bytes(platform_key.public_key()).hex()
        self.measurement = measurement
        self.runtime_version = runtime_version
        self._cert = _canonical(
            {
                "format": CERT_FORMAT,
                "attestation_key": self.attestation_key,
                "measurement": measurement,
                "runtime_version": runtime_version,
                "issued_at": round(time.time(), 3),
            }
        )
        self._cert_signature = platform_key.sign(self._cert)

    def quote(self, report_data: bytes) -> bytes:
        body = _canonical(
            {
                "format": QUOTE_FORMAT,
                "simulated": True,
                "attestation_key": self.attestation_key,
                "measurement": self.measurement,
                "report_data": report_data.hex(),
                "runtime_version": self.runtime_version,
                "issued_at": round(time.time(), 3),
            }
        )
        return _canonical(
            {
                "platform_key": self.platform_key,
                "certificate": _b64(self._cert),
                "certificate_signature": _b64(self._cert_signature),
                "quote": _b64(body),
                "quote_signature": _b64(self._key.sign(body)),
            }
        )


@dataclass(frozen=True)
class SimulatedReport:
    """What a verified simulated quote says."""

    platform_key: str
    attestation_key: str
    measurement: str
    report_data: bytes
    runtime_version: str


def _bad(message: str) -> AttestationError:
    return AttestationError("bad_quote", f"simulated quote is malformed: {message}", REFUSE)


def _json(raw: Any, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _bad(f"{what} is not JSON") from None
    if not isinstance(obj, dict):
        raise _bad(f"{what} is not a JSON object")
    return obj


def _field(obj: dict[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise _bad(f"{what} lacks {key}")
    return value


def _unb64(obj: dict[str, Any], key: str) -> bytes:
    try:
        return base64.b64decode(_field(obj, key, "evidence"), validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"{key} is not base64") from None


def _key(hex_key: str, what: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(hex_key))
    except ValueError:
        raise _bad(f"{what} is not an Ed25519 key") from None


def _verify(key: Ed25519PublicKey, signature: bytes, body: bytes, what: str) -> None:
    try:
        key.verify(signature, body)
    except InvalidSignature:
        raise AttestationError(
            "bad_signature",
            f"simulated {what} signature does not verify: forged or altered",
            REFUSE,
        ) from None


def verify_simulated(evidence: bytes, policy: VerificationPolicy) -> SimulatedReport:
    """The verified content of simulated evidence: pinned platform key -> certified attestation
    key -> quote; else the `AttestationError` of the first failed check."""
    outer = _json(evidence, "evidence")
    platform_hex = _field(outer, "platform_key", "evidence")
    try:
        platform = bytes.fromhex(platform_hex)
    except ValueError:
        raise _bad("platform_key is not hex") from None
    if platform not in set(policy.platform_pins):
        raise AttestationError(
            "unpinned_key",
            f"quote is certified by platform key {platform.hex()}, which you have not pinned "
            f"(pinned: {', '.join(p.hex() for p in policy.platform_pins) or 'none'})",
            "check the enclave host's platform.pub out of band, then pass it with --pin",
        )
    cert_raw, quote_raw = _unb64(outer, "certificate"), _unb64(outer, "quote")
    _verify(
        _key(platform_hex, "platform key"),
        _unb64(outer, "certificate_signature"),
        cert_raw,
        "certificate",
    )
    cert = _json(cert_raw, "certificate")
    if cert.get("format") != CERT_FORMAT:
        raise _bad(f"unknown certificate format {cert.get('format')!r}")
    ak_hex = _field(cert, "attestation_key", "certificate")
    _verify(_key(ak_hex, "attestation key"), _unb64(outer, "quote_signature"), quote_raw, "quote")
    body = _json(quote_raw, "quote")
    if body.get("format") != QUOTE_FORMAT or body.get("simulated") is not True:
        raise _bad(f"unknown quote format {body.get('format')!r}")
    measurement = _field(body, "measurement", "quote")
    if body.get("attestation_key") != ak_hex or cert.get("measurement") != measurement:
        raise _bad("quote and certificate disagree on the attestation key or measurement")
    try:
        report_data = bytes.fromhex(_field(body, "report_data", "quote"))
    except ValueError:
        raise _bad("report_data is not hex") from None
    return SimulatedReport(
        platform_key=platform_hex,
        attestation_key=ak_hex,
        measurement=measurement,
        report_data=report_data,
        runtime_version=_field(body, "runtime_version", "quote"),
    )
