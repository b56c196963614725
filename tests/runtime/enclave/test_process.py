"""The process backend for real: a worker process behind the enclave host, on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privpart.errors import PrivpartError
from privpart.runtime import frames
from privpart.runtime.channel.handshake import ClientHello
from privpart.runtime.channel.policy import VerificationPolicy
from privpart.runtime.channel.session import Session
from privpart.runtime.client import EnclaveClient
from privpart.runtime.enclave import EnclaveConfig, PlatformKeys
from privpart.runtime.enclave.process import ProcessBackend
from privpart.runtime.enclave.supervisor import launch
from privpart.runtime.errors import AttestationError, RemoteError
from tests.runtime.helpers import RawHttp, get_json, simulated_policy

RECORD = {"Content-Type": "application/x-privpart-record"}
TALLY: Counter = Counter()


def client(stack: SimpleNamespace, **kw: object) -> EnclaveClient:
    pin = kw.pop("pin", stack.backend.platform.public_raw)
    policy = kw.pop("policy", simulated_policy(pin))  # type: ignore[arg-type]
    measurement = kw.pop("measurement", stack.host.info.measurement)
    return EnclaveClient(stack.url, policy, measurement, **kw)  # type: ignore[arg-type]


def infer_once(stack: SimpleNamespace, x: torch.Tensor, **kw: object) -> tuple[object, object]:
    async def go() -> tuple[object, object]:
        c = client(stack, **kw)
        try:
            return await c.infer(x), c
        finally:
            await c.close()

    return asyncio.run(go())


def raw_session(stack: SimpleNamespace, http: RawHttp) -> Session:
    hello = ClientHello()
    status, body, _ = http.request(
        "POST",
        "/v1/attest",
        json.dumps(hello.to_json()).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200, body
    policy = simulated_policy(stack.backend.platform.public_raw)
    session, _ = hello.finish(json.loads(body), policy, stack.host.info.measurement)
    return session


def post_record(http: RawHttp, session: Session, record: bytes) -> tuple[int, bytes]:
    status, body, _ = http.request(
        "POST", f"/v1/sessions/{session.session_id}/infer", record, RECORD
    )
    return status, body


def check_correct(stack: SimpleNamespace, http: RawHttp, model: torch.nn.Module) -> None:
    session = raw_session(stack, http)
    x = torch.rand(2, *stack.host.info.input_shape)
    status, body = post_record(http, session, session.seal(frames.encode(x)))
    assert status == 200, body[:300]
    y = frames.decode(session.open(body), frames.FrameSpec())
    with torch.inference_mode():
        assert torch.allclose(y, model(x), atol=1e-5)


def test_info_and_health_say_simulated(enclave_stack: SimpleNamespace) -> None:
    status, info = get_json(enclave_stack.url + "/v1/info")
    assert status == 200 and info["simulated"] is True and info["backend"] == "process"
    assert info["measurement"] == enclave_stack.host.info.measurement
    assert info["platform_key"] == enclave_stack.backend.platform.public_raw.hex()
    status, health = get_json(enclave_stack.url + "/healthz")
    assert status == 200 and health["simulated"] is True


def test_enclave_mode_answers_match_a_local_forward(enclave_stack, tiny_model) -> None:  # noqa: ANN001
    x = torch.rand(3, *enclave_stack.host.info.input_shape)
    result, c = infer_once(enclave_stack, x)
    with torch.inference_mode():
        assert torch.allclose(result.logits, tiny_model(x), atol=1e-5)
    assert c.attestation.simulated is True
    for part in ("enclave_head", "enclave_decrypt", "tail_compute", "client_encrypt", "total"):
        assert part in result.timing


def test_unpinned_key_or_wrong_measurement_stop_the_client_before_it_sends(enclave_stack) -> None:  # noqa: ANN001
    x = torch.rand(1, *enclave_stack.host.info.input_shape)
    other = PlatformKeys.load_or_create(enclave_stack.sealed.parent.parent / "other-platform")
    with pytest.raises(AttestationError) as err:
        infer_once(enclave_stack, x, pin=other.public_raw)
    assert err.value.code == "unpinned_key"
    with pytest.raises(AttestationError) as err:
        infer_once(enclave_stack, x, measurement="00" * 32)
    assert err.value.code == "wrong_measurement"
    with pytest.raises(AttestationError) as err:  # the default policy: no simulated quotes
        infer_once(enclave_stack, x, policy=VerificationPolicy())
    assert err.value.code == "simulated_not_allowed"


def test_the_quote_is_the_workers_the_host_holds_no_signing_key(enclave_stack) -> None:  # noqa: ANN001
    """The evidence is made in the worker process: its attestation key is fresh per worker and
    certified by the platform key; the host object never loaded a private key."""
    http = RawHttp(enclave_stack.url)
    keys = set()
    for _ in range(2):
        hello = ClientHello()
        _, body, _ = http.request("POST", "/v1/attest", json.dumps(hello.to_json()).encode())
        answer = json.loads(body)
        _, att = hello.finish(
            answer,
            simulated_policy(enclave_stack.backend.platform.public_raw),
            enclave_stack.host.info.measurement,
        )
        keys.add(att.identity["attestation key"])
        assert answer["quote"]["evidence_type"] == "simulated-ed25519" and att.tee == "simulated"
    assert len(keys) == 1  # one attestation key per worker, not per quote
    assert keys != {enclave_stack.backend.platform.public_raw.hex()}
    assert not any(
        isinstance(v, Ed25519PrivateKey) for v in vars(enclave_stack.host).values()
    ) and not hasattr(enclave_stack.backend.platform, "signing")


def test_tampered_replayed_and_reordered_records_are_refused_live(
    enclave_stack: SimpleNamespace, tiny_model: torch.nn.Module
) -> None:
    http = RawHttp(enclave_stack.url)
    x = frames.encode(torch.rand(1, *enclave_stack.host.info.input_shape))
    outcomes = Counter()
    for trial in range(30):
        session = raw_session(enclave_stack, http)
        first = session.seal(x)
        kind = ("tamper", "replay", "reorder")[trial % 3]
        if kind == "tamper":
            bad = bytearray(first)
            bad[8 + trial % (len(bad) - 8)] ^= 0x40
            status, body = post_record(http, session, bytes(bad))
        elif kind == "replay":
            assert post_record(http, session, first)[0] == 200
            status, body = post_record(http, session, first)
        else:
            session.seal(x)  # seq 1 is skipped: seq 2 arrives
            status, body = post_record(http, session, session.seal(x))
        err = json.loads(body)
        outcomes[err["error"]] += 1
        assert status == 401 and err["error"] in {"tampered", "replayed", "out_of_order"}
        status, body = post_record(http, session, session.seal(x))  # the session is gone
        assert status == 410 and json.loads(body)["error"] == "unknown_session"
    assert outcomes == {"tampered": 10, "replayed": 10, "out_of_order": 10}
    check_correct(enclave_stack, http, tiny_model)


def test_garbage_ciphertext_fuzz(enclave_stack: SimpleNamespace, tiny_model) -> None:  # noqa: ANN001
    http = RawHttp(enclave_stack.url)

    @settings(
        max_examples=1200, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(st.binary(max_size=3000), st.booleans())
    def garbage(data: bytes, keep_seq: bool) -> None:
        session = raw_session(enclave_stack, http)
        record = (b"\0" * 8 + data) if keep_seq else data
        status, body = post_record(http, session, record)
        TALLY["garbage"] += 1
        assert status == 401, (status, body[:200])
        assert json.loads(body)["error"] in {"tampered", "record_truncated", "out_of_order"}
        if TALLY["garbage"] % 200 == 0:
            check_correct(enclave_stack, http, tiny_model)

    garbage()
    print(f"\ngarbage ciphertexts: {TALLY['garbage']}")
    check_correct(enclave_stack, http, tiny_model)
    status, body, _ = http.request("POST", "/v1/attest", b"not json")
    assert status == 400 and json.loads(body)["error"] == "bad_hello"
    status, body, _ = http.request("POST", "/v1/sessions/zz/infer", b"x")
    assert status == 410


def test_killed_worker_is_restarted_and_sessions_reattest(enclave_stack, tiny_model) -> None:  # noqa: ANN001
    sup = enclave_stack.supervisor
    shape = enclave_stack.host.info.input_shape

    async def scenario() -> tuple[int, list[object]]:
        c = client(enclave_stack, timeout=60)
        await c.infer(torch.rand(1, *shape))
        assert c.attestations == 1
        old_pid, generation = sup.pid, sup.generation
        os.kill(old_pid, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while sup.generation == generation and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert sup.generation == generation + 1 and sup.pid != old_pid
        x = torch.rand(2, *shape)
        result = await c.infer(x)  # old session gone -> re-attest -> retry once
        with torch.inference_mode():
            assert torch.allclose(result.logits, tiny_model(x), atol=1e-5)
        await c.close()
        return c.attestations, [sup.restarts, result.timing.get("retried")]

    attestations, (restarts, retried) = asyncio.run(scenario())
    assert attestations == 2 and restarts >= 1 and retried == 1.0
    assert get_json(enclave_stack.url + "/healthz")[0] == 200


def test_requests_in_flight_when_the_worker_dies_get_explicit_errors(enclave_stack) -> None:  # noqa: ANN001
    sup = enclave_stack.supervisor
    shape = enclave_stack.host.info.input_shape

    async def scenario() -> Counter:
        outcomes: Counter = Counter()
        clients = [client(enclave_stack, timeout=60) for _ in range(4)]
        stop = time.monotonic() + 6
        killed = False

        async def loop(c: EnclaveClient) -> None:
            while time.monotonic() < stop:
                try:
                    await c.infer(torch.rand(1, *shape))
                    outcomes["ok"] += 1
                except RemoteError as exc:
                    outcomes[exc.code] += 1

        async def killer() -> None:
            nonlocal killed
            await asyncio.sleep(1.0)
            os.kill(sup.pid, signal.SIGKILL)
            killed = True

        await asyncio.gather(killer(), *(loop(c) for c in clients))
        for c in clients:
            await c.close()
        assert killed
        return outcomes

    outcomes = asyncio.run(scenario())
    assert outcomes["ok"] > 10
    assert set(outcomes) <= {"ok", "worker_restarted", "worker_unavailable", "unknown_session"}


def test_key_is_withheld_from_a_worker_with_an_unexpected_measurement(enclave_stack) -> None:  # noqa: ANN001
    backend = ProcessBackend(enclave_stack.backend.platform, EnclaveConfig(threads=1))

    async def start() -> None:
        await launch(backend, enclave_stack.sealed, "00" * 32).start()

    with pytest.raises(PrivpartError, match="key withheld"):
        asyncio.run(start())


def test_a_head_over_the_enclave_budget_refuses_to_start(enclave_stack) -> None:  # noqa: ANN001
    backend = ProcessBackend(
        enclave_stack.backend.platform, EnclaveConfig(threads=1, epc_mib=1, max_batch=64)
    )

    async def start() -> None:
        sup = launch(backend, enclave_stack.sealed, enclave_stack.host.info.measurement)
        try:
            await sup.start()
        finally:
            await sup.stop()

    with pytest.raises(PrivpartError, match="enclave budget"):
        asyncio.run(start())


def test_an_overloaded_enclave_host_says_busy(enclave_stack: SimpleNamespace) -> None:
    http = RawHttp(enclave_stack.url)
    session = raw_session(enclave_stack, http)
    record = session.seal(frames.encode(torch.rand(1, *enclave_stack.host.info.input_shape)))
    enclave_stack.host.max_inflight = 0
    try:
        status, body, headers = http.request(
            "POST", f"/v1/sessions/{session.session_id}/infer", record, RECORD
        )
    finally:
        enclave_stack.host.max_inflight = 256
    assert status == 429 and json.loads(body)["error"] == "busy" and headers["Retry-After"] == "1"


def test_a_tail_answering_logits_that_do_not_fit_gets_an_error_to_the_client(
    enclave_stack: SimpleNamespace,
) -> None:
    """A tail server (real HTTP) answering well-formed frames of the wrong batch or classes: the
    client gets `bad_tail_answer`, never logits sealed by the enclave."""
    from aiohttp import web

    from privpart.runtime.enclave.host import EnclaveHost, build_enclave_app
    from privpart.runtime.server.runner import start_site

    answers = [torch.rand(3, 10), torch.rand(1, 7)]  # the request below has a batch of 1

    async def lying_tail(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(
            body=frames.encode(answers[0]), content_type="application/x-privpart-frame"
        )

    async def up() -> tuple:
        app = web.Application()
        app.router.add_post("/v1/infer", lying_tail)
        tail_runner, tail_url = await start_site(app, "127.0.0.1", 0)
        host = EnclaveHost(
            enclave_stack.backend, enclave_stack.supervisor, enclave_stack.host.info, tail_url
        )
        # the host app's cleanup would stop the shared worker: only its site is torn down below
        host_app = build_enclave_app(host)
        host_app.on_cleanup.clear()
        host_runner, url = await start_site(host_app, "127.0.0.1", 0)
        return tail_runner, host_runner, url

    tail_runner, host_runner, url = enclave_stack.loop.run(up())
    try:
        for answer in list(answers):
            answers[0] = answer
            with pytest.raises(RemoteError) as err:
                infer_once(
                    SimpleNamespace(**{**vars(enclave_stack), "url": url}), torch.rand(1, 1, 28, 28)
                )
            assert err.value.code == "bad_tail_answer" and err.value.status == 502
            assert "expected [1, 10] float32" in err.value.message
    finally:

        async def down() -> None:
            await host_runner.cleanup()
            await tail_runner.cleanup()

        enclave_stack.loop.run(down())
