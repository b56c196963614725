"""Attestation quotes: a platform key signs (measurement, report data) for a launched head.

Wire form: `{"payload": base64(canonical JSON body), "signature": base64(Ed25519 signature)}`.
The client checks, in order: the signer is a key it pinned; the signature verifies; the format
is known; the measurement is the one it expects; the report data is the hash of *its own*
handshake transcript (so a quote cannot be replayed into another session). A `simulated` quote
(process backend) is signed by a software key, not by hardware; it says so in every report.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from privpart.errors import PrivpartError
from privpart.runtime.errors import AttestationError

QUOTE_FORMAT = "privpart-quote/1"


@dataclass(frozen=True)
class QuoteBody:
    """What a quote asserts. `simulated` is true when no hardware backs the platform key."""

    backend: str
    simulated: bool
    measurement: str
    report_data: str
    runtime_version: str
    platform_key: str
    issued_at: float
    format: str = QUOTE_FORMAT

    def canonical(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def fingerprint(raw: bytes) -> str:
    """Short printable name of a platform public key."""
    return raw.hex()[:16]


def sign_quote(
    key: Ed25519PrivateKey,
    *,
    backend: str,
    simulated: bool,
    measurement: str,
    report_data: bytes,
    runtime_version: str,
) -> dict[str, str]:
    body = QuoteBody(
        backend=backend,
        simulated=simulated,
        measurement=measurement,
        report_data=report_data.hex(),
        runtime_version=runtime_version,
        platform_key=public_bytes(key.public_key()).hex(),
        issued_at=round(time.time(), 3),
    )
    payload = body.canonical()
    return {
        "payload": base64.b64encode(payload).decode(),
        "signature": base64.b64encode(key.sign(payload)).decode(),
    }


def _reject(code: str, message: str, hint: str) -> AttestationError:
    return AttestationError(code, message, hint)


def _decode_b64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise _reject("bad_quote", f"quote {what} is missing", "the enclave host is not privpart")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _reject("bad_quote", f"quote {what} is not base64", "the quote was altered") from None


def verify_quote(
    quote: Any,
    pinned: Sequence[bytes],
    expected_measurement: str,
    expected_report_data: bytes,
) -> QuoteBody:
    """The quote's body if it is trustworthy for this handshake; else `AttestationError`."""
    if not isinstance(quote, dict):
        raise _reject("bad_quote", "quote is not a JSON object", "the enclave host is not privpart")
    payload = _decode_b64(quote.get("payload"), "payload")
    signature = _decode_b64(quote.get("signature"), "signature")
    try:
        fields = json.loads(payload)
        body = QuoteBody(**fields)
        signer = bytes.fromhex(body.platform_key)
    except (json.JSONDecodeError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise _reject(
            "bad_quote", f"quote body is malformed: {exc}", "the quote was altered"
        ) from None
    if signer not in set(pinned):
        raise _reject(
            "unpinned_key",
            f"quote is signed by platform key {fingerprint(signer)}, which you have not pinned",
            "check the enclave host's platform.pub out of band, then pass it with --pin",
        )
    try:
        Ed25519PublicKey.from_public_bytes(signer).verify(signature, payload)
    except (InvalidSignature, ValueError):
        raise _reject(
            "bad_signature",
            "quote signature does not verify: forged or altered quote",
            "do not send data to this enclave host",
        ) from None
    if body.format != QUOTE_FORMAT:
        raise _reject("bad_quote", f"unknown quote format {body.format!r}", "upgrade privpart")
    if body.measurement != expected_measurement:
        raise _reject(
            "wrong_measurement",
            f"enclave runs head {body.measurement[:16]}..., you expect "
            f"{expected_measurement[:16]}...",
            "the enclave holds another head, cut, or privpart runtime version than your checkpoint",
        )
    if body.report_data != expected_report_data.hex():
        raise _reject(
            "wrong_report_data",
            "quote is not bound to this handshake (report data mismatch): replayed or relayed",
            "do not send data to this enclave host",
        )
    return body


def read_pin(value: str | Path) -> bytes:
    """A pinned platform public key: a file holding 64 hex digits, or the 64 digits themselves."""
    text = str(value).strip()
    path = Path(text)
    if path.is_file():
        text = path.read_text().strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise PrivpartError(
            f"pin {str(value)[:80]!r} is not a platform key",
            "pass the platform.pub file written by `privpart enclave`, or its 64 hex digits",
        )
    return raw
