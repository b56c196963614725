"""The tail server over real HTTP on loopback: correct answers, strict validation, limits,
backpressure, metrics, graceful drain, and >= 10,000 fuzzed frames without a crash."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import struct
from collections import Counter
from collections.abc import Iterator
from types import SimpleNamespace

import aiohttp
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privpart.runtime import frames
from privpart.runtime.head import SplitHead
from privpart.runtime.server import BatchConfig, TailConfig, build_tail_app, tail_service
from privpart.runtime.server.runner import start_site
from tests.runtime.helpers import LoopThread, RawHttp

FRAME = {"Content-Type": "application/x-privpart-frame"}
TALLY: Counter = Counter()


def fuzz_settings(n: int) -> settings:
    return settings(
        max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )


@pytest.fixture(scope="module")
def tail(tiny_split: SplitHead) -> Iterator[SimpleNamespace]:
    loop = LoopThread()
    cfg = TailConfig(batch=BatchConfig(max_batch=8, max_wait_ms=2, max_queue=64), device="cpu")
    app = build_tail_app(tiny_split, cfg)
    runner, url = loop.run(start_site(app, "127.0.0.1", 0))
    http = RawHttp(url)
    yield SimpleNamespace(url=url, http=http, service=tail_service(app), split=tiny_split)
    http.close()
    loop.run(runner.cleanup())
    loop.close()


def features(split: SplitHead, batch: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, *split.info.cut.shape, generator=g)


def check_correct(t: SimpleNamespace, seed: int = 0) -> None:
    x = features(t.split, 1 + seed % 3, seed)
    status, body, headers = t.http.request("POST", "/v1/infer", frames.encode(x), FRAME)
    assert status == 200, body[:300]
    y = frames.decode(body, frames.FrameSpec(max_batch=64))
    with torch.inference_mode():
        assert torch.allclose(y, t.split.tail(x), atol=1e-6)
    assert "compute;dur=" in headers["Server-Timing"]
    TALLY["correct"] += 1


def send(t: SimpleNamespace, frame: bytes, allow_ok: bool = False) -> int:
    """Send one fuzzed frame; it must get a clear JSON 4xx (or a valid answer if allowed)."""
    status, body, _ = t.http.request("POST", "/v1/infer", frame, FRAME)
    TALLY["fuzzed"] += 1
    TALLY[status] += 1
    if status == 200 and allow_ok:
        out = frames.decode(body, frames.FrameSpec(max_batch=64))
        assert out.shape[1:] == (10,)
    else:
        assert status in (400, 413), (status, body[:300])
        err = json.loads(body)
        assert err["error"] and err["message"] and "hint" in err
    if TALLY["fuzzed"] % 100 == 0:
        check_correct(t, TALLY["fuzzed"])  # the server keeps serving correct requests
    return status


def header_frame(header: object, payload: bytes) -> bytes:
    h = json.dumps(header).encode()
    return frames.PREFIX.pack(frames.MAGIC, len(h)) + h + payload


def test_answers_match_the_local_tail(tail: SimpleNamespace) -> None:
    for seed in range(5):
        check_correct(tail, seed)
    _, info = tail.http.request("GET", "/v1/info")[:2]
    assert json.loads(info)["cut"] == "block2"


def test_ten_thousand_fuzzed_frames_never_break_the_server(tail: SimpleNamespace) -> None:
    shape = list(tail.split.info.cut.shape)
    valid = frames.encode(features(tail.split, 2))

    @fuzz_settings(2500)
    @given(st.binary(max_size=2048))
    def random_bytes(data: bytes) -> None:
        send(tail, data)

    @fuzz_settings(2500)
    @given(
        st.dictionaries(
            st.sampled_from(["dtype", "shape", "extra", "DTYPE"]),
            st.sampled_from(["float32", "float16", "float64", "int8", "", "f4"])
            | st.lists(st.integers(-3, 2**40), max_size=10)
            | st.none()
            | st.floats()
            | st.text(max_size=5),
        ),
        st.binary(max_size=256),
    )
    def bad_headers(header: dict, payload: bytes) -> None:
        send(tail, header_frame(header, payload))

    @fuzz_settings(2500)
    @given(
        st.sampled_from(["truncate", "extend", "flip", "hlen", "magic"]),
        st.integers(0),
        st.binary(min_size=1, max_size=16),
    )
    def mutated(kind: str, pos: int, junk: bytes) -> None:
        frame = bytearray(valid)
        if kind == "truncate":
            frame = frame[: pos % len(frame)]
        elif kind == "extend":
            frame += junk
        elif kind == "flip":
            p = pos % len(frame)
            frame[p : p + len(junk)] = bytes(a ^ b for a, b in zip(frame[p:], junk, strict=False))
        elif kind == "hlen":
            frame[4:8] = struct.pack("<I", pos % 2**32)
        else:
            frame[0:4] = junk[:4].ljust(4, b"\0")
        send(tail, bytes(frame), allow_ok=kind in ("flip", "magic", "hlen"))

    @fuzz_settings(1500)
    @given(
        st.integers(1, 12),
        st.lists(st.integers(1, 40), min_size=0, max_size=4),
        st.sampled_from(["float32", "float16", "float64"]),
        st.booleans(),
    )
    def wrong_dtype_or_shape(batch: int, sample: list[int], dtype: str, oversize: bool) -> None:
        declared = [batch, *sample]
        if oversize:
            declared = [2**31, *shape]
        item = frames.DTYPES[dtype][0].itemsize
        n = math.prod(declared) * item
        payload = b"\0" * n if n <= 1 << 20 else b""
        frame = header_frame({"dtype": dtype, "shape": declared}, payload)
        status = send(tail, frame, allow_ok=True)
        if status == 200:  # only a frame that really is valid may pass
            assert dtype == "float32" and declared[1:] == shape and batch <= 8

    @fuzz_settings(1500)
    @given(
        st.lists(
            st.tuples(st.integers(0), st.sampled_from([math.nan, math.inf, -math.inf])),
            min_size=1,
            max_size=5,
        )
    )
    def non_finite(bad: list[tuple[int, float]]) -> None:
        x = features(tail.split, 1).reshape(-1)
        for pos, value in bad:
            x[pos % x.numel()] = value
        assert send(tail, frames.encode(x.reshape(1, *shape))) == 400

    start = TALLY["fuzzed"]
    for fuzzer in (random_bytes, bad_headers, mutated, wrong_dtype_or_shape, non_finite):
        fuzzer()
    sent = TALLY["fuzzed"] - start
    print(f"\nfuzzed frames: {sent}, statuses {dict(TALLY)}, reconnects {tail.http.reconnects}")
    assert sent >= 10_000
    check_correct(tail)
    assert TALLY[500] == 0


@fuzz_settings(400)
@given(st.integers(1, 5000), st.binary(max_size=64), st.booleans())
def test_lying_or_truncated_http_bodies_get_an_error_or_a_clean_close(
    tail: SimpleNamespace, declared: int, sent: bytes, half_close: bool
) -> None:
    port = int(tail.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-privpart-"
            b"frame\r\nContent-Length: %d\r\n\r\n" % declared + sent[:declared]
        )
        if half_close or len(sent) < declared:
            s.shutdown(socket.SHUT_WR)  # the body ends early
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and not half_close and len(sent) >= declared:
                break
    TALLY["raw"] += 1
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:200]
    if TALLY["raw"] % 50 == 0:
        check_correct(tail, TALLY["raw"])


def test_size_limit_is_enforced_before_reading(tail: SimpleNamespace) -> None:
    limit = tail.service.spec.max_bytes
    status, body, _ = tail.http.request("POST", "/v1/infer", b"\0" * (limit + 1), FRAME)
    assert status == 413 and json.loads(body)["error"] == "too_large"
    check_correct(tail)


def test_unknown_paths_and_methods_answer_json(tail: SimpleNamespace) -> None:
    for method, path, code in (("GET", "/nope", 404), ("GET", "/v1/infer", 405)):
        status, body, _ = tail.http.request(method, path)
        assert status == code and json.loads(body)["error"]


def test_health_and_prometheus_metrics(tail: SimpleNamespace) -> None:
    check_correct(tail)
    status, body, _ = tail.http.request("GET", "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body, headers = tail.http.request("GET", "/metrics")
    text = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples['privpart_tail_requests_total{code="200"}'] >= 1
    assert (
        samples['privpart_tail_batch_size_bucket{le="+Inf"}']
        == samples["privpart_tail_batch_size_count"]
    )
    assert "privpart_tail_queue_samples" in samples and "privpart_tail_draining" in samples


async def _burst(url: str, frame: bytes, n: int) -> list[tuple[int, dict]]:
    async with aiohttp.ClientSession() as session:

        async def one() -> tuple[int, dict]:
            async with session.post(url + "/v1/infer", data=frame, headers=FRAME) as r:
                body = await r.read()
                return r.status, (json.loads(body) if r.status != 200 else dict(r.headers))

        return await asyncio.gather(*(one() for _ in range(n)))


def test_overload_gets_explicit_busy_answers_never_silence(tiny_split: SplitHead) -> None:
    async def scenario() -> list[tuple[int, dict]]:
        slow = BatchConfig(max_batch=2, max_wait_ms=0, max_queue=4)
        app = build_tail_app(tiny_split, TailConfig(batch=slow, device="cpu"))
        service = tail_service(app)
        inner = service.batcher.run
        service.batcher.run = lambda x: (__import__("time").sleep(0.05), inner(x))[1]
        runner, url = await start_site(app, "127.0.0.1", 0)
        try:
            return await _burst(url, frames.encode(features(tiny_split)), 40)
        finally:
            await runner.cleanup()

    results = asyncio.run(scenario())
    statuses = Counter(s for s, _ in results)
    assert statuses[200] + statuses[429] == 40 and statuses[429] > 0 and statuses[200] >= 4
    busy = next(body for s, body in results if s == 429)
    assert busy["error"] == "busy" and "retry" in busy["hint"].lower()


def test_graceful_shutdown_answers_everything_in_flight(tiny_split: SplitHead) -> None:
    async def scenario() -> tuple[list[tuple[int, dict]], int]:
        cfg = BatchConfig(max_batch=4, max_wait_ms=0, max_queue=256)
        app = build_tail_app(tiny_split, TailConfig(batch=cfg, device="cpu"))
        service = tail_service(app)
        inner = service.batcher.run
        service.batcher.run = lambda x: (__import__("time").sleep(0.02), inner(x))[1]
        runner, url = await start_site(app, "127.0.0.1", 0)
        burst = asyncio.create_task(_burst(url, frames.encode(features(tiny_split)), 24))
        await asyncio.sleep(0.1)  # requests are queued and running
        await runner.cleanup()  # graceful: drain, then stop
        return await burst, service.batcher.stats.samples

    results, answered = asyncio.run(scenario())
    assert all(s == 200 for s, _ in results), Counter(s for s, _ in results)
    assert answered == 24
