"""The stream transport's wire format, defined once for the server and both clients.

All integers little-endian. A connection starts with the client's hello; every later client
message is one request, every server message one reply, in order (one request in flight per
connection; a client wanting more opens more connections).

Client -> server::

    hello    b"PPS1" | uint32 L | L bytes of UTF-8 JSON {"version": 1, "token": str|null}
             (1 <= L <= 4096)
    request  uint32 N | N bytes: one tensor frame (frames.py), 1 <= N <= the server's limit

Server -> client::

    reply    uint32 N | uint16 status | uint16 M | M bytes of UTF-8 JSON meta | N bytes body

The reply to the hello has status 200 and the server's description (`GET /v1/info`) as its
JSON body, or an error. A request's reply has status 200 with the logits frame as its body and
`{"timing": {...}}` (the parts `Server-Timing` carries over HTTP) as meta, or an error status
with the protocol's JSON error `{error, message, hint}` as its body. After an error that
leaves the stream unusable (bad hello, wrong token, oversized or late request) the server
closes the connection; after any other error the connection serves the next request.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

MAGIC = b"PPS1"
VERSION = 1
HELLO = struct.Struct("<4sI")
REQUEST = struct.Struct("<I")
REPLY = struct.Struct("<IHH")
MAX_HELLO = 4096
MAX_META = 16 << 10
SCHEMES = {"tcp": False, "tls": True}  # URL scheme -> TLS


def hello(token: str | None) -> bytes:
    body = json.dumps({"version": VERSION, "token": token}, separators=(",", ":")).encode()
    return HELLO.pack(MAGIC, len(body)) + body


def request_prefix(size: int) -> bytes:
    return REQUEST.pack(size)


def reply_parts(status: int, body: bytes | memoryview, meta: dict[str, Any] | None = None) -> list:
    """The reply as parts to write one after the other (the body is never copied)."""
    blob = json.dumps(meta, separators=(",", ":")).encode() if meta else b""
    return [REPLY.pack(len(body), status, len(blob)) + blob, body]


def frame_size(parts: Sequence[bytes | memoryview]) -> int:
    return sum(memoryview(p).nbytes for p in parts)


def parse_meta(blob: bytes | bytearray | memoryview) -> dict[str, Any]:
    """The reply's meta object (empty when absent or not a JSON object)."""
    if not blob:
        return {}
    try:
        meta = json.loads(bytes(blob))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def timing_of(meta: dict[str, Any]) -> dict[str, float]:
    timing = meta.get("timing")
    if not isinstance(timing, dict):
        return {}
    return {str(k): float(v) for k, v in timing.items() if isinstance(v, int | float)}
