"""The tensor frame: the one binary message every runtime hop speaks (client, enclave, tail).

Layout (all integers little-endian)::

    offset 0   4 bytes   magic  b"PPT1"
    offset 4   uint32    H = length of the JSON header in bytes (1 <= H <= 1024)
    offset 8   H bytes   UTF-8 JSON object with exactly two keys (encoders pad it with spaces
                         so the payload starts at a multiple of 64 bytes):
                           "dtype": "float32" | "float16" | "float64"
                           "shape": [batch, d1, d2, ...]   (1 to 8 positive integers)
    offset 8+H           payload: prod(shape) * itemsize bytes, C order, little-endian

A receiver validates in order of cost, and stops at the first failure with a `FrameError` that
names it: magic, header length, JSON, keys, dtype, shape, declared size against its byte limit
(before looking at the payload), exact payload length (truncated or trailing bytes), expected
dtype and per-sample shape, batch limit, and finally that every value is finite. Nothing in a
frame is ever executed or unpickled.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from math import prod

import numpy as np
import torch

from privpart.runtime import protocol
from privpart.runtime.errors import FrameError

MAGIC = b"PPT1"
PREFIX = struct.Struct("<4sI")
MAX_HEADER = 1024
MAX_RANK = 8
ALIGN = 64
DTYPES: dict[str, tuple[np.dtype, torch.dtype]] = {
    "float32": (np.dtype("<f4"), torch.float32),
    "float16": (np.dtype("<f2"), torch.float16),
    "float64": (np.dtype("<f8"), torch.float64),
}
TORCH_NAMES = {t: name for name, (_, t) in DTYPES.items()}


@dataclass(frozen=True)
class FrameSpec:
    """What a receiver accepts: dtype, per-sample shape (None: any), batch and byte limits."""

    dtype: str = "float32"
    sample_shape: tuple[int, ...] | None = None
    max_batch: int = 64
    max_bytes: int = 64 << 20

    @classmethod
    def for_samples(
        cls, sample_shape: tuple[int, ...], max_batch: int, dtype: str = "float32"
    ) -> FrameSpec:
        """A spec whose byte limit is exactly a full batch of `sample_shape` plus the header."""
        item = DTYPES[dtype][0].itemsize
        limit = PREFIX.size + MAX_HEADER + max_batch * prod(sample_shape) * item
        return cls(dtype, tuple(sample_shape), max_batch, limit)


def encode(tensor: torch.Tensor) -> bytes:
    """One frame holding `tensor` (moved to CPU; its dtype must be one of `DTYPES`)."""
    return b"".join(encode_parts(tensor))


def encode_parts(tensor: torch.Tensor) -> tuple[bytes, memoryview]:
    """`encode(tensor)` as (prefix and header, payload): a transport that can send the two one
    after the other skips copying the payload; the payload views the tensor's CPU memory."""
    if tensor.dtype not in TORCH_NAMES:
        raise FrameError(
            "unsupported_dtype",
            f"cannot send a {tensor.dtype} tensor",
            f"convert it to one of {', '.join(DTYPES)}",
        )
    t = tensor.detach().to("cpu").contiguous()
    if t.dim() == 0:
        t = t.reshape(1)
    header = json.dumps(
        {"dtype": TORCH_NAMES[t.dtype], "shape": list(t.shape)}, separators=(",", ":")
    ).encode()
    header += b" " * (-(PREFIX.size + len(header)) % ALIGN)  # payload starts 64-byte aligned
    payload = t.numpy().view(np.uint8).reshape(-1)
    return PREFIX.pack(MAGIC, len(header)) + header, memoryview(payload)


def _fail(code: str, message: str, hint: str = "", status: int = 400) -> FrameError:
    default = "send a frame as documented in docs/runtime.md (magic PPT1, JSON header, raw LE data)"
    return FrameError(code, message, hint or default, status)


def _header(buf: bytes | memoryview, spec: FrameSpec) -> tuple[str, tuple[int, ...], int]:
    if len(buf) < PREFIX.size:
        raise _fail("truncated", f"frame is {len(buf)} bytes, shorter than its 8-byte prefix")
    magic, hlen = PREFIX.unpack_from(buf, 0)
    if magic != MAGIC:
        raise _fail("bad_magic", f"frame starts with {bytes(magic)!r}, not {MAGIC!r}")
    if not 1 <= hlen <= MAX_HEADER:
        raise _fail(
            "bad_header_length", f"declared header length {hlen} is outside 1..{MAX_HEADER}"
        )
    if len(buf) < PREFIX.size + hlen:
        raise _fail(
            "truncated",
            f"frame ends inside its header ({len(buf) - PREFIX.size} of {hlen} header bytes)",
        )
    try:
        header = json.loads(bytes(buf[PREFIX.size : PREFIX.size + hlen]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _fail("bad_header", f"frame header is not UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict) or set(header) != {"dtype", "shape"}:
        keys = sorted(header) if isinstance(header, dict) else type(header).__name__
        raise _fail("bad_header", f"frame header must have exactly dtype and shape, got {keys}")
    dtype, shape = header["dtype"], header["shape"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise _fail("unknown_dtype", f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= MAX_RANK
        or not all(type(d) is int and d > 0 for d in shape)
    ):
        raise _fail("bad_shape", f"shape {shape!r} is not a list of 1..{MAX_RANK} positive ints")
    return dtype, tuple(shape), PREFIX.size + hlen


def decode(buf: bytes | bytearray | memoryview, spec: FrameSpec) -> torch.Tensor:
    """The tensor in `buf`, after every check in the module docstring; else `FrameError`."""
    dtype, shape, offset = _header(buf, spec)
    np_dtype, _ = DTYPES[dtype]
    declared = prod(shape) * np_dtype.itemsize
    if offset + declared > spec.max_bytes:
        raise _fail(
            "too_large",
            f"frame declares {declared} payload bytes; this endpoint accepts at most "
            f"{spec.max_bytes - offset}",
            f"send at most {spec.max_batch} samples per request",
            status=413,
        )
    got = len(buf) - offset
    if got != declared:
        what = "truncated" if got < declared else "trailing_bytes"
        raise _fail(what, f"shape {list(shape)} of {dtype} needs {declared} bytes, got {got}")
    if dtype != spec.dtype:
        raise _fail(
            "wrong_dtype",
            f"expected {spec.dtype} tensors, got {dtype}",
            f"cast the tensor to {spec.dtype} before sending",
        )
    if spec.sample_shape is not None and shape[1:] != spec.sample_shape:
        raise _fail(
            "wrong_shape",
            f"expected samples of shape {list(spec.sample_shape)}, got {list(shape[1:])}",
            "send [batch, *sample_shape]; check the cut the server was started with "
            f"({protocol.INFO.path})",
        )
    if shape[0] > spec.max_batch:
        raise _fail(
            "batch_too_large",
            f"batch of {shape[0]} exceeds the limit of {spec.max_batch}",
            f"split it into requests of at most {spec.max_batch}",
            status=413,
        )
    array = np.frombuffer(buf, dtype=np_dtype, count=prod(shape), offset=offset)
    finite = np.isfinite(array)  # numpy: single-threaded, no OpenMP wake-ups for a check
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        raise _fail(
            "non_finite", f"tensor holds {bad} NaN or infinite values", "send finite values only"
        )
    if isinstance(buf, bytearray) and array.ctypes.data % 16 == 0:  # writable, aligned: share
        return torch.frombuffer(
            buf, dtype=DTYPES[dtype][1], count=prod(shape), offset=offset
        ).reshape(shape)
    return torch.from_numpy(array.copy()).reshape(shape)
