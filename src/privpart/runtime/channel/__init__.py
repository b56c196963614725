"""Client <-> enclave channel: the quote envelope and its verification policy (simulated
evidence or Intel DCAP via dcap-qvl), a key exchange bound to the quote, and an AES-GCM record
layer with per-direction sequence numbers. Primitives come from `cryptography` and dcap-qvl."""

from privpart.runtime.channel.attestation import Attestation, read_pin, verify_envelope
from privpart.runtime.channel.envelope import QuoteEnvelope, report_data
from privpart.runtime.channel.handshake import ClientHello, accept_hello, transcript_hash
from privpart.runtime.channel.policy import TcbStatus, VerificationPolicy, load_policy
from privpart.runtime.channel.session import Session

__all__ = [
    "Attestation",
    "ClientHello",
    "QuoteEnvelope",
    "Session",
    "TcbStatus",
    "VerificationPolicy",
    "accept_hello",
    "load_policy",
    "read_pin",
    "report_data",
    "transcript_hash",
    "verify_envelope",
]
