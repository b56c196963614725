"""The tail's stream transport against a real tail server on loopback (`runtime/stream`): the
same answers as HTTP, and the same limits (token, frame size, deadlines, connection guard)."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from privpart.runtime import frames
from privpart.runtime.client import DeviceClient, StreamClient
from privpart.runtime.errors import RemoteError, TransportError
from privpart.runtime.head import SplitHead
from privpart.runtime.server import BatchConfig, ServerLimits, TailConfig, build_tail_app
from privpart.runtime.server.runner import start_site
from privpart.runtime.stream import wire
from privpart.runtime.stream.blocking import BlockingStream
from privpart.runtime.stream.server import tail_stream_site
from tests.runtime.helpers import LoopThread, closed_by_server, loopback_sources

TOKEN = "stream-token-0123456789abcdef"


@pytest.fixture(scope="module")
def tail(tiny_split: SplitHead) -> Iterator[SimpleNamespace]:
    loop = LoopThread()
    limits = ServerLimits(
        body_timeout_s=1.0,
        max_connections=64,
        token=TOKEN,
        header_timeout_s=0.8,
        idle_timeout_s=1.5,
        max_connections_per_address=6,
    )
    cfg = TailConfig(batch=BatchConfig(max_wait_ms=0), device="cpu", limits=limits)
    app = build_tail_app(tiny_split, cfg)

    async def up() -> SimpleNamespace:
        runner, url = await start_site(app, "127.0.0.1", 0)
        site = tail_stream_site(app, "127.0.0.1", 0)
        await site.start(runner)
        return SimpleNamespace(runner=runner, url=url, site=site)

    s = loop.run(up())
    yield SimpleNamespace(url=s.url, stream=s.site.url, guard=s.runner.guard, split=tiny_split)

    async def down() -> None:
        s.site.stop_listening()
        await s.runner.cleanup()
        await s.site.close_all()

    loop.run(down())
    loop.close()


def features(split: SplitHead, n: int = 1) -> torch.Tensor:
    x = torch.rand(n, *split.info.input_shape, generator=torch.Generator().manual_seed(n))
    with torch.inference_mode():
        return split.head(x)


def raw(url: str) -> socket.socket:
    host, port = url.removeprefix("tcp://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def reply(sock: socket.socket) -> tuple[int, dict]:
    head = b""
    while len(head) < wire.REPLY.size:
        chunk = sock.recv(wire.REPLY.size - len(head))
        if not chunk:
            raise ConnectionError("closed before a reply")
        head += chunk
    size, status, meta = wire.REPLY.unpack(head)
    rest = b""
    while len(rest) < size + meta and (chunk := sock.recv(65536)):
        rest += chunk
    return status, json.loads(rest[meta:]) if status != 200 else {}


def hello_ok(sock: socket.socket) -> None:
    sock.sendall(wire.hello(TOKEN))
    assert reply(sock)[0] == 200


def test_the_stream_answers_what_http_answers_and_is_advertised(tail: SimpleNamespace) -> None:
    async def both() -> tuple[torch.Tensor, torch.Tensor, dict, dict, dict]:
        x = torch.rand(3, *tail.split.info.input_shape)
        stream = DeviceClient(tail.split, tail.stream, token=TOKEN)
        http = DeviceClient(tail.split, tail.url, token=TOKEN)
        try:
            info, described = await stream.check_tail(), await http.check_tail()
            a, b = await stream.infer(x), await http.infer(x)
        finally:
            await stream.close()
            await http.close()
        return a.logits, b.logits, a.timing, info, described

    a, b, timing, info, described = asyncio.run(both())
    assert torch.equal(a, b)
    assert info["cut"] == tail.split.info.cut.name
    # the server's parts come back with the answer, as Server-Timing does over HTTP
    assert {"tail_read", "tail_decode", "tail_compute", "tail_encode"} <= set(timing)
    assert described["stream"] == tail.stream  # GET /v1/info names the stream URL


def test_a_wrong_token_is_refused_at_the_hello_and_the_connection_closed(
    tail: SimpleNamespace,
) -> None:
    async def attempt(token: str | None) -> None:
        client = StreamClient(tail.stream, token=token)
        try:
            await client.infer_frame(frames.encode(features(tail.split)))
        finally:
            await client.close()

    for token in (None, "x" * 30):
        with pytest.raises(RemoteError) as err:
            asyncio.run(attempt(token))
        assert err.value.code == "unauthorized" and err.value.status == 401
    sock = raw(tail.stream)
    sock.sendall(wire.hello("wrong-token-000000000000"))
    status, body = reply(sock)
    assert (status, body["error"]) == (401, "unauthorized")
    assert closed_by_server(sock, 2.0)[0]


def test_a_client_speaking_http_to_the_stream_port_gets_a_clear_refusal(
    tail: SimpleNamespace,
) -> None:
    sock = raw(tail.stream)
    sock.sendall(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n")
    status, body = reply(sock)
    assert (status, body["error"]) == (400, "bad_hello")
    assert "HTTP port" in body["hint"]
    assert closed_by_server(sock, 2.0)[0]


def test_an_oversized_request_is_refused_from_its_prefix(tail: SimpleNamespace) -> None:
    sock = raw(tail.stream)
    hello_ok(sock)
    sock.sendall(struct.pack("<I", 1 << 31))  # 2 GiB declared, nothing sent
    status, body = reply(sock)
    assert (status, body["error"]) == (413, "too_large")
    assert closed_by_server(sock, 2.0)[0]


def test_a_bad_frame_is_answered_and_the_connection_keeps_serving(tail: SimpleNamespace) -> None:
    good = frames.encode(features(tail.split))
    bad = bytearray(good)
    bad[:4] = b"XXXX"
    nan = frames.encode(torch.full_like(features(tail.split), float("nan")))
    host, port = tail.stream.removeprefix("tcp://").split(":")
    conn = BlockingStream(host, int(port), token=TOKEN)
    try:
        for frame, code in ((bad, "bad_magic"), (nan, "non_finite")):
            status, _, body = conn.roundtrip([frame])
            assert status == 400 and json.loads(body)["error"] == code
        status, meta, body = conn.roundtrip([good])
        assert status == 200 and "compute" in meta["timing"]
        assert frames.decode(body, frames.FrameSpec()).shape == (
            1,
            tail.split.info.spec.num_classes,
        )
    finally:
        conn.close()


def test_silent_slow_and_idle_connections_are_closed_on_their_deadlines(
    tail: SimpleNamespace,
) -> None:
    silent = raw(tail.stream)  # never says hello: closed after header_timeout_s (0.8 s)
    closed, sent = closed_by_server(silent, 3.0)
    assert closed and sent == b""

    slow = raw(tail.stream)  # declares a frame, sends part of it: 408 after body_timeout_s
    hello_ok(slow)
    slow.sendall(struct.pack("<I", 4096) + b"\0" * 100)
    started = time.monotonic()
    status, body = reply(slow)
    assert (status, body["error"]) == (408, "body_timeout")
    assert time.monotonic() - started < 3.0
    assert closed_by_server(slow, 2.0)[0]

    idle = raw(tail.stream)  # says hello, then nothing: closed after idle_timeout_s (1.5 s)
    hello_ok(idle)
    assert closed_by_server(idle, 4.0)[0]


def test_stream_connections_count_against_the_servers_connection_guard(
    tail: SimpleNamespace,
) -> None:
    """Per-address limit 6, shared with HTTP: a seventh connection from one address takes the
    place of that address's oldest idle one, so a flood cannot hold more than its share."""
    held = [raw(tail.stream) for _ in range(6)]
    for sock in held:
        hello_ok(sock)
    newcomer = raw(tail.stream)
    hello_ok(newcomer)
    assert closed_by_server(held[0], 2.0)[0]  # the oldest gave way
    assert tail.guard.live <= 6
    for sock in [*held, newcomer]:
        sock.close()


def test_an_unreachable_stream_is_a_clear_transport_error(tail: SimpleNamespace) -> None:
    async def attempt() -> None:
        client = StreamClient("tcp://127.0.0.1:9")
        try:
            await client.info()
        finally:
            await client.close()

    with pytest.raises(TransportError) as err:
        asyncio.run(attempt())
    assert err.value.code == "unreachable" and "--stream-port" in err.value.hint


def test_fuzzed_requests_get_errors_or_a_close_and_good_ones_are_still_served(
    tail: SimpleNamespace,
) -> None:
    """600 malformed requests (random bytes, flipped and cut frames, lying prefixes) on a few
    connections: each is answered with a 4xx or the connection closed; a correct request
    after every 100 gets the model's answer; nothing reaches 5xx."""
    rng = np.random.default_rng(0)
    good = frames.encode(features(tail.split))
    with torch.inference_mode():
        want = tail.split.tail(features(tail.split))
    host, port = tail.stream.removeprefix("tcp://").split(":")
    conn = BlockingStream(host, int(port), token=TOKEN, timeout=10)
    statuses: dict[int, list[int]] = {0: [], 1: [], 2: []}
    try:
        for i in range(600):
            kind = i % 3
            if kind == 0:  # random bytes of a random length
                body = rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8).tobytes()
            elif kind == 1:  # a good frame with a few bytes flipped
                flipped = bytearray(good)
                for pos in rng.integers(0, len(flipped), 4):
                    flipped[int(pos)] ^= 0xFF
                body = bytes(flipped)
            else:  # a good frame cut short or extended
                cut = int(rng.integers(1, len(good) - 1))
                body = good[:cut] if rng.random() < 0.5 else good + b"\0" * cut
            try:
                status, _, _ = conn.roundtrip([body])
                statuses[kind].append(status)
            except (ConnectionError, OSError):
                conn.close()
                conn = BlockingStream(host, int(port), token=TOKEN, timeout=10)
                statuses[kind].append(0)
            if i % 100 == 99:
                status, _, answer = conn.roundtrip([good])
                assert status == 200
                got = frames.decode(answer, frames.FrameSpec())
                assert torch.allclose(got, want, atol=1e-5)
    finally:
        conn.close()
    # random bytes and cut or extended frames are never valid; a flipped payload byte may be
    assert all(400 <= s < 500 for k in (0, 2) for s in statuses[k]), statuses
    assert all(s == 200 or 400 <= s < 500 for s in statuses[1]), statuses[1]


def test_an_idle_stream_flood_at_the_cap_leaves_a_new_client_served(tail: SimpleNamespace) -> None:
    """64 idle stream connections from 11 addresses fill the cap (64); a client from another
    address is still served, because the heaviest address gives up its oldest idle one."""
    held = []
    try:
        for source in loopback_sources(11, first=20):
            for _ in range(6 if len(held) < 60 else 4):
                host, port = tail.stream.removeprefix("tcp://").split(":")
                sock = socket.create_connection(
                    (host, int(port)), timeout=10, source_address=(source, 0)
                )
                hello_ok(sock)
                held.append(sock)
        assert tail.guard.live >= 64
        started = time.monotonic()

        async def newcomer() -> torch.Tensor:
            client = DeviceClient(tail.split, tail.stream, token=TOKEN)
            try:
                return (await client.infer(torch.rand(1, *tail.split.info.input_shape))).logits
            finally:
                await client.close()

        # from 127.0.0.1, which holds none of the flood's connections
        assert asyncio.run(newcomer()).shape == (1, tail.split.info.spec.num_classes)
        assert time.monotonic() - started < 3.0
        assert tail.guard.evicted >= 1
    finally:
        for sock in held:
            sock.close()
