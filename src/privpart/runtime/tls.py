"""TLS between the head and the tail, with the tail's certificate pinned.

The tail server can serve HTTPS (`privpart serve --tls-cert FILE --tls-key FILE`); the enclave
worker and device-mode clients then accept only a server presenting exactly that certificate
(`--tail-cert FILE`: its SHA-256 is the pin). The host relaying the worker's traffic can then
neither read nor alter the features and logits; what the tail itself computes is still outside
what any TEE protects.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from privpart.errors import PrivpartError


def cert_fingerprint(cert: Path) -> bytes:
    """SHA-256 of the certificate's DER encoding: the pin."""
    try:
        der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)
    except (OSError, ValueError) as exc:
        raise PrivpartError(
            f"{cert} is not a PEM certificate: {exc}",
            "pass the tail server's certificate file (the one given to serve --tls-cert)",
        ) from None
    return hashlib.sha256(der).digest()


def presents_pin(peer: ssl.SSLObject | ssl.SSLSocket, pin: bytes) -> bool:
    """Whether the TLS peer's certificate is exactly the pinned one (constant-time compare)."""
    der = peer.getpeercert(binary_form=True) or b""
    return hmac.compare_digest(hashlib.sha256(der).digest(), pin)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise PrivpartError(
            f"cannot load the TLS certificate {cert} with key {key}: {exc}",
            "pass a PEM certificate and its private key (e.g. made with openssl req -x509)",
        ) from None
    return ctx
