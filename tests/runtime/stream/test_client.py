"""The stream clients on their own: what they write, which URLs they take, and what they say
when the port answers something other than a privpart server."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from privpart.errors import PrivpartError
from privpart.runtime.errors import RemoteError
from privpart.runtime.stream.blocking import BlockingStream, StreamClosed
from privpart.runtime.stream.client import StreamClient, coalesce, parse_url
from privpart.runtime.stream.wire import REPLY


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


def impostor() -> tuple[socket.socket, threading.Thread]:
    """A server on loopback that answers any hello with a well-formed reply whose body is not
    JSON: something else listening on the port a client was given."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            conn.recv(4096)
            conn.sendall(REPLY.pack(5, 200, 0) + b"<html")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_a_hello_answered_with_something_else_is_a_clear_error_on_both_clients() -> None:
    listener, thread = impostor()
    port = listener.getsockname()[1]

    async def evented() -> None:
        client = StreamClient(f"tcp://127.0.0.1:{port}", timeout=5)
        try:
            await client.info()
        finally:
            await client.close()

    try:
        with pytest.raises(RemoteError, match="not JSON") as err:
            asyncio.run(evented())
        assert err.value.code == "bad_answer"
        with pytest.raises(StreamClosed, match="not a privpart stream port"):
            BlockingStream("127.0.0.1", port, timeout=5)
    finally:
        thread.join(10)
        listener.close()
