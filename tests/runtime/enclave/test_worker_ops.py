"""The worker's operations in-process (no pipe, no threads): the request path, one request per
session at a time, and tail failures that close the session."""

from __future__ import annotations

import argparse
import io
from types import SimpleNamespace

import pytest
import torch

from privpart.runtime import frames
from privpart.runtime.channel.handshake import ClientHello
from privpart.runtime.enclave import ipc
from privpart.runtime.enclave import worker as W
from privpart.runtime.enclave.quoting import SimulatedSource
from privpart.runtime.errors import EnclaveError, RuntimeFailure
from tests.runtime.helpers import simulated_policy


class Pool:
    def __init__(self) -> None:
        self.jobs: list[W.TailJob] = []

    def submit(self, job: W.TailJob) -> None:
        self.jobs.append(job)


class Link:
    def __init__(self, tail: torch.nn.Module | None) -> None:
        self.tail, self.posted = tail, []

    def post(
        self, url: str, frame: bytes | tuple, token: str | None = None
    ) -> tuple[bytes, dict[str, float]]:
        """`frame`: the frame or its parts (`frames.encode_parts`), as `TailLink.post` takes."""
        self.posted.append(url)
        if self.tail is None:
            raise RuntimeFailure("tail_unreachable", "cannot connect", status=502)
        whole = frame if isinstance(frame, bytes) else b"".join(frame)
        with torch.inference_mode():
            y = self.tail(frames.decode(bytearray(whole), frames.FrameSpec()))
        return frames.encode(y), {"compute": 0.1}


class LyingTail(Link):
    """A tail (or a host on its path) answering logits that do not fit the request."""

    def __init__(self, answer: torch.Tensor) -> None:
        super().__init__(None)
        self.answer = answer

    def post(
        self, url: str, frame: bytes | tuple, token: str | None = None
    ) -> tuple[bytes, dict[str, float]]:
        return frames.encode(self.answer), {}


@pytest.fixture
def rig(tiny_split, platform) -> SimpleNamespace:  # noqa: ANN001
    args = argparse.Namespace(
        max_sessions=4,
        max_sessions_per_client=3,
        session_ttl=600.0,
        backend="process",
        max_batch=2,
        tail_timeout=5.0,
        tail_pin="",
    )
    out, pool = io.BytesIO(), Pool()
    quotes = SimulatedSource(platform, tiny_split.info.measurement)
    w = W.Worker(tiny_split.head, tiny_split.info, args, out, pool, quotes)
    w.link = Link(tiny_split.tail)
    return SimpleNamespace(w=w, out=out, pool=pool, split=tiny_split, platform=platform)


def attest(rig: SimpleNamespace, client: str = "127.0.0.1"):  # noqa: ANN201
    hello = ClientHello()
    header = {"hello": hello.to_json(), "client": client}
    reply, _ = W.OPS["attest"](rig.w, header, memoryview(b""))
    policy = simulated_policy(rig.platform.public_raw)
    session, _ = hello.finish(reply, policy, rig.split.info.measurement)
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
    assert rig.w.sessions.get(session.session_id) is None and not rig.w.busy


@pytest.mark.parametrize(
    ("rows", "classes", "dtype", "why"),
    [
        (1, 10, torch.float32, "1 rows of logits for a batch of 2"),  # wrong batch
        (3, 10, torch.float32, "batch of 3 exceeds"),  # more rows than the batch limit
        (2, 7, torch.float32, "expected samples of shape [10]"),  # wrong classes
        (2, 10, torch.float64, "expected float32"),  # wrong dtype
    ],
)
def test_logits_that_do_not_fit_the_request_never_reach_the_client(
    rig: SimpleNamespace, rows: int, classes: int, dtype: torch.dtype, why: str
) -> None:
    rig.w.link = LyingTail(torch.rand(rows, classes, dtype=dtype))
    session = attest(rig)
    frame = frames.encode(torch.rand(2, *rig.split.info.input_shape))
    header = {"session": session.session_id, "tail": "http://t", "id": 9}
    W.OPS["infer"](rig.w, header, memoryview(session.seal(frame)))
    rig.pool.jobs.pop().run()
    ((reply, body),) = replies(rig.out)
    assert reply["error"] == "bad_tail_answer" and reply["status"] == 502 and body == b""
    assert why in reply["message"] and "expected [2, 10] float32" in reply["message"]
    assert rig.w.sessions.get(session.session_id) is None  # the session is closed


def test_an_attestation_flood_evicts_only_the_flooders_own_sessions(rig: SimpleNamespace) -> None:
    mine = attest(rig, client="10.0.0.1")
    flood = [attest(rig, client="10.0.0.2") for _ in range(3)]
    attest(rig, client="10.0.0.2")  # the flooder's 4th: drops its own oldest
    assert rig.w.sessions.get(flood[0].session_id) is None
    assert rig.w.sessions.get(mine.session_id) is not None
    assert rig.w.sessions.count("10.0.0.2") == 3 and len(rig.w.sessions) == 4
    # the table is full: a newcomer gets a session from the address holding the most (the
    # flooder), never from one holding fewer (tests/runtime/enclave/test_sessions.py)
    newcomer = attest(rig, client="10.0.0.3")
    assert rig.w.sessions.get(newcomer.session_id) is not None
    assert rig.w.sessions.count("10.0.0.2") == 2 and len(rig.w.sessions) == 4
    assert rig.w.sessions.get(mine.session_id) is not None
