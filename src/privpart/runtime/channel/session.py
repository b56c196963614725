"""The AEAD record layer of an attested session.

A record is `seq (8 bytes, big-endian) || AES-256-GCM(ciphertext || tag)`. Each direction has its
own key and 12-byte IV from the handshake; the nonce is the IV XOR the sequence number (as in TLS
1.3), so a nonce is never reused under one key. The associated data binds the session id, the
direction and the sequence number. A receiver accepts only the next expected sequence number:
an older one is a replay, a newer one a reordering or a drop. Any failure closes the session for
good, so an attacker gets one guess per handshake.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from privpart.runtime.errors import ChannelError

SEQ = struct.Struct(">Q")
TAG_BYTES = 16
AAD_DOMAIN = b"privpart-record-v1"
REATTEST = "open a new session (attest again); the client library does this automatically"


class Session:
    """One side of an attested channel: `seal` outgoing records, `open` incoming ones, in order."""

    def __init__(
        self,
        session_id: str,
        send: tuple[bytes, bytes, bytes],
        recv: tuple[bytes, bytes, bytes],
    ) -> None:
        """`send`/`recv` are (key, iv, direction label) for each direction."""
        self.session_id = session_id
        self._sid = session_id.encode()
        self._send_aead, self._send_iv, self._send_dir = AESGCM(send[0]), send[1], send[2]
        self._recv_aead, self._recv_iv, self._recv_dir = AESGCM(recv[0]), recv[1], recv[2]
        self.send_seq = 0
        self.recv_seq = 0
        self.closed_reason: str | None = None

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    def _nonce(self, iv: bytes, seq: int) -> bytes:
        return bytes(a ^ b for a, b in zip(iv, b"\0\0\0\0" + SEQ.pack(seq), strict=True))

    def _aad(self, direction: bytes, seq: int) -> bytes:
        return b"|".join((AAD_DOMAIN, self._sid, direction, SEQ.pack(seq)))

    def close(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason

    def _refuse(self, code: str, message: str) -> ChannelError:
        self.close(message)
        return ChannelError(code, f"{message}; session {self.session_id[:8]} closed", REATTEST)

    def seal(self, plaintext: bytes | bytearray | memoryview) -> bytearray:
        """Encrypt the next outgoing record (straight into one buffer: no copy of the payload)."""
        if self.closed_reason is not None:
            raise ChannelError("session_closed", f"session closed: {self.closed_reason}", REATTEST)
        seq = self.send_seq
        if seq >= 2**63:
            raise self._refuse("sequence_exhausted", "sequence numbers exhausted")
        self.send_seq += 1
        record = bytearray(SEQ.size + len(plaintext) + TAG_BYTES)
        SEQ.pack_into(record, 0, seq)
        self._send_aead.encrypt_into(
            self._nonce(self._send_iv, seq),
            plaintext,
            self._aad(self._send_dir, seq),
            memoryview(record)[SEQ.size :],
        )
        return record

    def open(self, record: bytes | bytearray | memoryview) -> bytearray:
        """Decrypt the next incoming record; anything but the expected, authentic one closes."""
        if self.closed_reason is not None:
            raise ChannelError("session_closed", f"session closed: {self.closed_reason}", REATTEST)
        if len(record) < SEQ.size + TAG_BYTES:
            raise self._refuse(
                "record_truncated", f"record of {len(record)} bytes is shorter than seq + tag"
            )
        (seq,) = SEQ.unpack_from(record, 0)
        if seq < self.recv_seq:
            raise self._refuse("replayed", f"replayed record (sequence {seq} was already used)")
        if seq > self.recv_seq:
            raise self._refuse(
                "out_of_order",
                f"out-of-order record (expected sequence {self.recv_seq}, got {seq})",
            )
        nonce = self._nonce(self._recv_iv, seq)
        plaintext = bytearray(len(record) - SEQ.size - TAG_BYTES)  # writable: decoded in place
        try:
            self._recv_aead.decrypt_into(
                nonce, memoryview(record)[SEQ.size :], self._aad(self._recv_dir, seq), plaintext
            )
        except InvalidTag:
            raise self._refuse(
                "tampered", "record failed authentication (tampered, truncated or wrong key)"
            ) from None
        self.recv_seq += 1
        return plaintext
