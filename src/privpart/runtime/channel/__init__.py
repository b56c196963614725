"""Client <-> enclave channel: signed attestation quotes, a key exchange bound to them, and an
AES-GCM record layer with per-direction sequence numbers. Primitives come from `cryptography`."""

from privpart.runtime.channel.attestation import QuoteBody, read_pin, sign_quote, verify_quote
from privpart.runtime.channel.handshake import ClientHello, accept_hello, transcript_hash
from privpart.runtime.channel.session import Session

__all__ = [
    "ClientHello",
    "QuoteBody",
    "Session",
    "accept_hello",
    "read_pin",
    "sign_quote",
    "transcript_hash",
    "verify_quote",
]
