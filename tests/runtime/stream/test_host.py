"""The enclave host's stream port (`enclave/host.py` `HostStream`) with a real worker process:
sealed requests over one persistent connection give the model's answer, and a bad session id,
a host without a stream port and a plain stream off this machine are refused clearly."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
import torch

from privpart.errors import PrivpartError
from privpart.runtime.client import EnclaveClient
from privpart.runtime.client.enclave import check_transport
from privpart.runtime.enclave.host import EnclaveHost, build_enclave_app, host_stream_site
from privpart.runtime.head import SplitHead
from privpart.runtime.server.runner import start_site
from privpart.runtime.stream.blocking import BlockingStream
from tests.runtime.helpers import simulated_policy


@pytest.fixture(scope="module")
def streamed_host(enclave_stack: SimpleNamespace, tiny_split: SplitHead) -> SimpleNamespace:
    """A second host on the session's worker, with a stream port beside its HTTP one."""
    host = EnclaveHost(
        enclave_stack.backend, enclave_stack.supervisor, tiny_split.info, enclave_stack.tail_url
    )
    app = build_enclave_app(host)
    app.on_cleanup.clear()  # the session's shared worker outlives this host
    site = host_stream_site(host, "127.0.0.1", 0)

    async def up() -> tuple:
        runner, url = await start_site(app, "127.0.0.1", 0)
        await site.start(runner)
        return runner, url

    runner, url = enclave_stack.loop.run(up())
    yield SimpleNamespace(url=url, stream=site.url, host=host)

    async def down() -> None:
        site.stop_listening()
        await runner.cleanup()
        await site.close_all()

    enclave_stack.loop.run(down())


def test_sealed_requests_over_the_hosts_stream_give_the_models_answer(
    enclave_stack: SimpleNamespace,
    streamed_host: SimpleNamespace,
    tiny_split: SplitHead,
    tiny_model: torch.nn.Module,
) -> None:
    x = torch.rand(2, *tiny_split.info.input_shape)
    with torch.inference_mode():
        want = tiny_model(x)
    policy = simulated_policy(enclave_stack.backend.platform.public_raw)

    async def run() -> list:
        c = EnclaveClient(streamed_host.url, policy, tiny_split.info.measurement, stream=True)
        try:
            return [await c.infer(x) for _ in range(3)]
        finally:
            await c.close()

    results = asyncio.run(run())
    for r in results:
        assert torch.allclose(r.logits, want, atol=1e-5)
    assert {"enclave_head", "tail_compute", "enclave_ipc"} <= set(results[-1].timing)
    assert streamed_host.host.describe()["stream"] == streamed_host.stream


def test_a_bad_or_unknown_session_is_answered_and_the_stream_keeps_serving(
    streamed_host: SimpleNamespace,
) -> None:
    host, port = streamed_host.stream.removeprefix("tcp://").split(":")
    conn = BlockingStream(host, int(port))
    try:
        # malformed: refused by the host itself, which says where the id goes
        status, _, body = conn.roundtrip([b"not-a-session-id" * 2, b"\x00" * 64])
        error = json.loads(body)
        assert (status, error["error"]) == (410, "unknown_session")
        assert "first 32 bytes" in error["hint"]
        # well formed but unknown: the worker's answer, relayed on the same connection
        status, _, body = conn.roundtrip([b"0" * 32, b"\x00" * 64])
        assert (status, json.loads(body)["error"]) == (410, "unknown_session")
    finally:
        conn.close()


def test_a_host_without_a_stream_port_is_a_clear_error(
    enclave_stack: SimpleNamespace, tiny_split: SplitHead
) -> None:
    policy = simulated_policy(enclave_stack.backend.platform.public_raw)

    async def run() -> None:
        c = EnclaveClient(enclave_stack.url, policy, tiny_split.info.measurement, stream=True)
        try:
            await c.infer(torch.rand(1, *tiny_split.info.input_shape))
        finally:
            await c.close()

    with pytest.raises(PrivpartError, match="has no stream port") as err:
        asyncio.run(run())
    assert "--stream-port" in err.value.hint


def test_a_plain_stream_off_this_machine_is_refused_like_plain_http() -> None:
    with pytest.raises(PrivpartError, match="refusing plain HTTP"):
        check_transport("tcp://10.1.2.3:8701", allow_plain_http=False)
    assert check_transport("tls://10.1.2.3:8701", allow_plain_http=False) is None
    assert "plain HTTP" in (check_transport("tcp://127.0.0.1:8701", False) or "")
