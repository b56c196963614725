"""The stream client's pieces that need no server: what it writes, and which URLs it takes."""

from __future__ import annotations

import pytest

from privpart.errors import PrivpartError
from privpart.runtime.stream.client import coalesce, parse_url


def test_small_parts_are_joined_and_the_payload_is_passed_uncopied() -> None:
    payload = memoryview(bytearray(1 << 20))
    out = coalesce([b"\x04\x00\x00\x00", b"PPT1header", payload, b"tail", b"!"])
    assert [memoryview(p).nbytes for p in out] == [14, 1 << 20, 5]
    assert out[0] == b"\x04\x00\x00\x00PPT1header"
    assert out[1] is payload  # one segment for the prefix and header, the payload as it is


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("tcp://127.0.0.1:8601", ("127.0.0.1", 8601, False)),
        ("tls://tail.example:443", ("tail.example", 443, True)),
    ],
)
def test_stream_urls_name_their_transport(url: str, parsed: tuple) -> None:
    assert parse_url(url) == parsed


@pytest.mark.parametrize("url", ["http://127.0.0.1:8600", "tcp://127.0.0.1", "tcp://:8601"])
def test_other_urls_are_refused_with_what_to_pass(url: str) -> None:
    with pytest.raises(PrivpartError, match="tcp://HOST:PORT or tls://HOST:PORT"):
        parse_url(url)
