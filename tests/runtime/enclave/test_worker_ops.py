"""The worker's operations in-process (no pipe, no threads): the request path, one request per
session at a time, and tail failures that close the session."""

from __future__ import annotations

import argparse
import io
from types import SimpleNamespace

import pytest
import torch

from privpart.runtime import frames
from privpart.runtime.channel.attestation import sign_quote
from privpart.runtime.channel.handshake import ClientHello
from privpart.runtime.enclave import ipc
from privpart.runtime.enclave import worker as W
from privpart.runtime.errors import EnclaveError, RuntimeFailure


class Pool:
    def __init__(self) -> None:
        self.jobs: list[W.TailJob] = []

    def submit(self, job: W.TailJob) -> None:
        self.jobs.append(job)


class Link:
    def __init__(self, tail: torch.nn.Module | None) -> None:
        self.tail, self.posted = tail, []

    def post(self, url: str, frame: bytes) -> tuple[bytes, dict[str, float]]:
        self.posted.append(url)
        if self.tail is None:
            raise RuntimeFailure("tail_unreachable", "cannot connect", status=502)
        with torch.inference_mode():
            y = self.tail(frames.decode(frame, frames.FrameSpec()))
        return frames.encode(y), {"compute": 0.1}


@pytest.fixture
def rig(tiny_split, platform) -> SimpleNamespace:  # noqa: ANN001
    args = argparse.Namespace(
        max_sessions=4, quote_source="platform", max_batch=2, tail_timeout=5.0
    )
    out, pool = io.BytesIO(), Pool()
    w = W.Worker(tiny_split.head, tiny_split.info, args, out, pool)
    w.link = Link(tiny_split.tail)
    return SimpleNamespace(w=w, out=out, pool=pool, split=tiny_split, platform=platform)


def attest(rig: SimpleNamespace):  # noqa: ANN201
    hello = ClientHello()
    reply, _ = W.OPS["attest"](rig.w, {"hello": hello.to_json()}, memoryview(b""))
    quote = sign_quote(
        rig.platform.signing,
        backend="process",
        simulated=True,
        measurement=rig.split.info.measurement,
        report_data=bytes.fromhex(reply["report_data"]),
        runtime_version="t",
    )
    session, _ = hello.finish(
        {**reply, "quote": quote}, [rig.platform.public_raw], rig.split.info.measurement
    )
    return session


def replies(out: io.BytesIO) -> list[tuple[dict, bytes]]:
    stream, got = io.BytesIO(out.getvalue()), []
    while True:
        try:
            header, body = ipc.read_sync(stream)
        except ipc.PipeClosed:
            return got
        got.append((header, bytes(body)))


def test_request_path_answers_the_split_forward(rig: SimpleNamespace) -> None:
    session = attest(rig)
    x = torch.rand(2, *rig.split.info.input_shape)
    header = {"session": session.session_id, "tail": "http://127.0.0.1:9", "id": 7}
    assert W.OPS["infer"](rig.w, header, memoryview(session.seal(frames.encode(x)))) is None
    rig.pool.jobs.pop().run()
    ((reply, record),) = replies(rig.out)
    assert reply["id"] == 7 and {"head", "decrypt", "encrypt", "tail_compute"} <= set(
        reply["timing"]
    )
    y = frames.decode(session.open(record), frames.FrameSpec())
    with torch.inference_mode():
        assert torch.equal(y, rig.split.tail(rig.split.head(x)))
    assert rig.w.link.posted == ["http://127.0.0.1:9"] and not rig.w.busy


def test_a_second_request_while_one_is_in_flight_closes_the_session(rig: SimpleNamespace) -> None:
    session = attest(rig)
    frame = frames.encode(torch.rand(1, *rig.split.info.input_shape))
    header = {"session": session.session_id, "tail": "http://t", "id": 1}
    W.OPS["infer"](rig.w, header, memoryview(session.seal(frame)))
    with pytest.raises(RuntimeFailure) as err:
        W.OPS["infer"](rig.w, {**header, "id": 2}, memoryview(session.seal(frame)))
    assert err.value.code == "session_busy" and err.value.status == 409
    rig.pool.jobs.pop().run()  # the first one still completes
    assert replies(rig.out)[0][0]["id"] == 1
    with pytest.raises(EnclaveError) as err:
        W.OPS["infer"](rig.w, {**header, "id": 3}, memoryview(session.seal(frame)))
    assert err.value.code == "unknown_session"


def test_a_failing_tail_answers_an_error_and_closes_the_session(rig: SimpleNamespace) -> None:
    rig.w.link = Link(None)
    session = attest(rig)
    frame = frames.encode(torch.rand(1, *rig.split.info.input_shape))
    W.OPS["infer"](
        rig.w,
        {"session": session.session_id, "tail": "http://t", "id": 5},
        memoryview(session.seal(frame)),
    )
    rig.pool.jobs.pop().run()
    ((reply, body),) = replies(rig.out)
    assert reply == {**reply, "id": 5, "error": "tail_unreachable", "status": 502} and body == b""
    assert session.session_id not in rig.w.sessions and not rig.w.busy


def test_sessions_beyond_the_limit_drop_the_oldest(rig: SimpleNamespace) -> None:
    first = attest(rig)
    for _ in range(4):
        attest(rig)
    assert first.session_id not in rig.w.sessions and len(rig.w.sessions) == 4
