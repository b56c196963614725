"""Key exchange between a client and an attested enclave (X25519 + HKDF-SHA256).

1. Client -> enclave: `hello = {nonce: 32 random bytes, client_pub: X25519 public key}`.
2. The enclave draws an ephemeral X25519 key and a session id, and computes the transcript hash
   `T = SHA-256(domain, measurement, nonce, client_pub, enclave_pub, session_id)`. The
   enclave's quote carries `T` in its report data (`envelope.report_data`).
3. Both sides derive 88 bytes = HKDF(salt=T, ikm=X25519 shared secret, info=domain): the
   client->enclave key and IV, then the enclave->client key and IV.

So the keys are bound to the measurement the client verified and to its fresh nonce: a quote
for another head, another handshake, or another enclave key yields other keys or fails the
report-data check.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

import dcap_qvl
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from privpart.runtime.channel.attestation import Attestation, verify_envelope
from privpart.runtime.channel.envelope import QuoteEnvelope
from privpart.runtime.channel.policy import VerificationPolicy
from privpart.runtime.channel.session import Session
from privpart.runtime.errors import AttestationError, ChannelError

DOMAIN = b"privpart-channel-v1"
C2S, S2C = b"c2s", b"s2c"
KEY, IV = 32, 12


def transcript_hash(
    measurement: str, nonce: bytes, client_pub: bytes, enclave_pub: bytes, session_id: str
) -> bytes:
    h = hashlib.sha256()
    for part in (DOMAIN, measurement.encode(), nonce, client_pub, enclave_pub, session_id.encode()):
        h.update(struct.pack("<I", len(part)))
        h.update(part)
    return h.digest()


def _raw(pub: X25519PublicKey) -> bytes:
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _derive(private: X25519PrivateKey, peer: bytes, transcript: bytes) -> list[bytes]:
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(peer))
    except ValueError as exc:  # wrong length or a low-order point (all-zero secret)
        raise ChannelError(
            "bad_key_share",
            f"unusable X25519 key share: {exc}",
            "send a fresh 32-byte X25519 public key",
        ) from None
    okm = HKDF(
        algorithm=hashes.SHA256(), length=2 * (KEY + IV), salt=transcript, info=DOMAIN + b" keys"
    ).derive(shared)
    return [okm[0:32], okm[32:44], okm[44:76], okm[76:88]]


def _hex32(d: dict[str, Any], key: str) -> bytes:
    try:
        raw = bytes.fromhex(str(d[key]))
    except (KeyError, ValueError, TypeError):
        raw = b""
    if len(raw) != 32:
        raise ChannelError(
            "bad_hello",
            f"{key} must be 32 bytes in hex",
            "send the handshake as documented in docs/runtime.md",
        )
    return raw


@dataclass
class ClientHello:
    """The client's half of a handshake: keep it until the enclave answers."""

    nonce: bytes = field(default_factory=lambda: os.urandom(32))
    private: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)

    @property
    def public(self) -> bytes:
        return _raw(self.private.public_key())

    def to_json(self) -> dict[str, str]:
        return {"nonce": self.nonce.hex(), "client_pub": self.public.hex()}

    def finish(
        self,
        answer: dict[str, Any],
        policy: VerificationPolicy,
        expected_measurement: str,
        collateral: dcap_qvl.QuoteCollateralV3 | None = None,
    ) -> tuple[Session, Attestation]:
        """Verify the enclave's quote for this hello and derive the session; else raise."""
        if not isinstance(answer, dict):
            raise AttestationError(
                "bad_quote",
                "attestation answer is not a JSON object",
                "the enclave host is not privpart",
            )
        enclave_pub = _hex32(answer, "enclave_pub")
        session_id = answer.get("session")
        if not isinstance(session_id, str) or not 8 <= len(session_id) <= 64:
            raise AttestationError(
                "bad_quote",
                "attestation answer has no session id",
                "the enclave host is not privpart",
            )
        transcript = transcript_hash(
            expected_measurement, self.nonce, self.public, enclave_pub, session_id
        )
        envelope = QuoteEnvelope.from_json(answer.get("quote"))
        attestation = verify_envelope(
            envelope, policy, expected_measurement, transcript, collateral
        )
        c2s_key, c2s_iv, s2c_key, s2c_iv = _derive(self.private, enclave_pub, transcript)
        session = Session(session_id, (c2s_key, c2s_iv, C2S), (s2c_key, s2c_iv, S2C))
        return session, attestation


def accept_hello(measurement: str, hello: dict[str, Any]) -> tuple[Session, bytes, bytes]:
    """Enclave side: (session, enclave public key, transcript hash `T` for the quote)."""
    if not isinstance(hello, dict):
        raise ChannelError(
            "bad_hello", "hello is not a JSON object", "send {nonce, client_pub} as hex"
        )
    nonce, client_pub = _hex32(hello, "nonce"), _hex32(hello, "client_pub")
    private = X25519PrivateKey.generate()
    enclave_pub = _raw(private.public_key())
    session_id = secrets.token_hex(16)
    transcript = transcript_hash(measurement, nonce, client_pub, enclave_pub, session_id)
    c2s_key, c2s_iv, s2c_key, s2c_iv = _derive(private, client_pub, transcript)
    session = Session(session_id, (s2c_key, s2c_iv, S2C), (c2s_key, c2s_iv, C2S))
    return session, enclave_pub, transcript
