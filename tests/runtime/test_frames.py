from __future__ import annotations

import contextlib
import json
import struct

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privpart.runtime import frames
from privpart.runtime.errors import FrameError

SPEC = frames.FrameSpec.for_samples((2, 3), max_batch=4)
FAST = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def raw(header: object, payload: bytes = b"") -> bytes:
    h = json.dumps(header).encode()
    return frames.PREFIX.pack(frames.MAGIC, len(h)) + h + payload


def test_round_trip_is_exact() -> None:
    x = torch.randn(3, 2, 3)
    y = frames.decode(frames.encode(x), SPEC)
    assert torch.equal(x, y) and y.dtype == torch.float32


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"", "truncated"),
        (b"XXXX\x05\x00\x00\x00hello", "bad_magic"),
        (frames.PREFIX.pack(frames.MAGIC, 0), "bad_header_length"),
        (frames.PREFIX.pack(frames.MAGIC, 5000), "bad_header_length"),
        (frames.PREFIX.pack(frames.MAGIC, 50) + b"{}", "truncated"),
        (frames.PREFIX.pack(frames.MAGIC, 3) + b"{]}", "bad_header"),
        (raw({"dtype": "float32"}), "bad_header"),
        (raw({"dtype": "float32", "shape": [1, 2, 3], "x": 1}), "bad_header"),
        (raw({"dtype": "int8", "shape": [1, 2, 3]}), "unknown_dtype"),
        (raw({"dtype": "float32", "shape": [1, -2, 3]}), "bad_shape"),
        (raw({"dtype": "float32", "shape": [1, True, 3]}), "bad_shape"),
        (raw({"dtype": "float32", "shape": []}), "bad_shape"),
        (raw({"dtype": "float32", "shape": [2**40, 2, 3]}), "too_large"),
        (raw({"dtype": "float32", "shape": [1, 2, 3]}, b"\0" * 23), "truncated"),
        (raw({"dtype": "float32", "shape": [1, 2, 3]}, b"\0" * 25), "trailing_bytes"),
        (raw({"dtype": "float64", "shape": [1, 2, 3]}, b"\0" * 48), "wrong_dtype"),
        (raw({"dtype": "float32", "shape": [1, 3, 2]}, b"\0" * 24), "wrong_shape"),
        (raw({"dtype": "float32", "shape": [5, 2, 3]}, b"\0" * 120), "batch_too_large"),
    ],
)
def test_each_malformation_has_its_own_error(frame: bytes, code: str) -> None:
    with pytest.raises(FrameError) as err:
        frames.decode(frame, SPEC)
    assert err.value.code == code and err.value.message and err.value.hint


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_are_refused(bad: float) -> None:
    x = torch.zeros(1, 2, 3)
    x[0, 1, 2] = bad
    with pytest.raises(FrameError) as err:
        frames.decode(frames.encode(x), SPEC)
    assert err.value.code == "non_finite" and err.value.status == 400


def test_oversize_declared_length_is_refused_before_reading() -> None:
    frame = raw({"dtype": "float32", "shape": [4, 2, 3000]})
    with pytest.raises(FrameError) as err:
        frames.decode(frame, SPEC)
    assert err.value.code == "too_large" and err.value.status == 413


@FAST
@given(st.binary(max_size=400))
def test_random_bytes_never_escape_as_other_exceptions(data: bytes) -> None:
    with contextlib.suppress(FrameError):
        frames.decode(data, SPEC)


@FAST
@given(st.integers(0, 200), st.binary(min_size=1, max_size=8))
def test_corrupted_valid_frames_decode_or_fail_cleanly(pos: int, junk: bytes) -> None:
    frame = bytearray(frames.encode(torch.randn(2, 2, 3)))
    pos = pos % len(frame)
    frame[pos : pos + len(junk)] = junk
    try:
        out = frames.decode(bytes(frame), SPEC)
        assert out.shape[1:] == (2, 3) and torch.isfinite(out).all()
    except FrameError:
        pass


def test_prefix_layout_is_little_endian() -> None:
    frame = frames.encode(torch.ones(1, 2, 3))
    magic, hlen = struct.unpack("<4sI", frame[:8])
    header = json.loads(frame[8 : 8 + hlen])
    assert magic == b"PPT1" and header == {"dtype": "float32", "shape": [1, 2, 3]}
    assert frame[8 + hlen : 8 + hlen + 4] == struct.pack("<f", 1.0)
