"""Messages between the supervisor (host) and the enclave worker, over the worker's stdin/stdout.

Each message: `uint32 LE total length | uint32 LE header length | JSON header | payload bytes`.
The header carries `op` and `id`; payloads are sealed records or tensor frames, passed as raw
bytes. No pickle: the pipe is as untrusted as any other host-controlled input.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any, BinaryIO

LENGTHS = struct.Struct("<II")
MAX_MESSAGE = 1 << 30


class PipeClosed(Exception):
    """The other end of the pipe went away."""


Payload = bytes | bytearray | memoryview


def pack_parts(header: dict[str, Any], payload: Payload = b"") -> tuple[bytes, Payload]:
    """(prefix + header, payload): written one after the other, the payload is never copied."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return LENGTHS.pack(len(head) + len(payload), len(head)) + head, payload


def pack(header: dict[str, Any], payload: Payload = b"") -> bytes:
    return b"".join(pack_parts(header, payload))


def _unpack(total: int, hlen: int, body: bytes) -> tuple[dict[str, Any], memoryview]:
    if hlen > total:
        raise PipeClosed(f"malformed message (header {hlen} > total {total})")
    view = memoryview(body)
    return json.loads(view[:hlen].tobytes()), view[hlen:]


def read_sync(stream: BinaryIO) -> tuple[dict[str, Any], memoryview]:
    """Blocking read of one message (worker side)."""
    prefix = stream.read(LENGTHS.size)
    if len(prefix) < LENGTHS.size:
        raise PipeClosed("supervisor closed the pipe")
    total, hlen = LENGTHS.unpack(prefix)
    if total > MAX_MESSAGE:
        raise PipeClosed(f"message of {total} bytes exceeds the pipe limit")
    body = bytearray(total)  # writable: a frame decoded from it needs no copy
    got = stream.readinto(body)
    if got < total:
        raise PipeClosed("supervisor closed the pipe mid-message")
    return _unpack(total, hlen, body)


def write_sync(stream: BinaryIO, header: dict[str, Any], payload: Payload = b"") -> None:
    for part in pack_parts(header, payload):
        stream.write(part)
    stream.flush()


async def read_async(reader: asyncio.StreamReader) -> tuple[dict[str, Any], memoryview]:
    """Read one message (supervisor side)."""
    try:
        prefix = await reader.readexactly(LENGTHS.size)
        total, hlen = LENGTHS.unpack(prefix)
        if total > MAX_MESSAGE:
            raise PipeClosed(f"message of {total} bytes exceeds the pipe limit")
        body = await reader.readexactly(total)
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise PipeClosed("worker closed the pipe") from exc
    return _unpack(total, hlen, body)
