"""A host under abuse keeps serving a well-behaved client: slow bodies time out and are not
counted in flight, an attestation flood only costs the flooder its own sessions, and with a
token only clients holding it get in. Real worker process, real sockets."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
import torch

from privpart.runtime.channel.handshake import ClientHello
from privpart.runtime.client import EnclaveClient
from privpart.runtime.errors import RemoteError
from privpart.runtime.server.limits import ServerLimits
from tests.runtime.helpers import RawHttp, read_reply, simulated_policy, slow_body


def _attest(stack: SimpleNamespace, http: RawHttp) -> int:
    hello = ClientHello()
    status, _, _ = http.request("POST", "/v1/attest", json.dumps(hello.to_json()).encode())
    return status


def test_slow_bodies_time_out_without_locking_out_a_well_behaved_client(
    enclave_stack: SimpleNamespace, tiny_model: torch.nn.Module
) -> None:
    host = enclave_stack.host
    saved = host.limits, host.max_inflight
    host.limits, host.max_inflight = ServerLimits(body_timeout_s=1.5), 2
    shape = host.info.input_shape
    try:
        path = "/v1/sessions/" + "ab" * 16 + "/infer"
        slow = [slow_body(enclave_stack.url, path, 10_000, b"\0" * 10) for _ in range(4)]
        slow.append(slow_body(enclave_stack.url, "/v1/attest", 500, b'{"nonce"'))

        async def good() -> torch.Tensor:
            policy = simulated_policy(enclave_stack.backend.platform.public_raw)
            client = EnclaveClient(enclave_stack.url, policy, host.info.measurement)
            try:
                return (await client.infer(x)).logits
            finally:
                await client.close()

        x = torch.rand(2, *shape)
        logits = asyncio.run(good())  # served while five senders stall (more than max_inflight)
        with torch.inference_mode():
            assert torch.allclose(logits, tiny_model(x), atol=1e-5)
        for sock in slow:
            status, err = read_reply(sock)
            assert status == 408 and err["error"] == "body_timeout", err
        assert host.inflight == 0
    finally:
        host.limits, host.max_inflight = saved


def test_an_attestation_flood_does_not_end_another_clients_session(
    enclave_stack: SimpleNamespace,
) -> None:
    host = enclave_stack.host
    good = EnclaveClient(
        enclave_stack.url,
        simulated_policy(enclave_stack.backend.platform.public_raw),
        host.info.measurement,
    )
    x = torch.rand(1, *host.info.input_shape)
    flooder = RawHttp(enclave_stack.url, source="127.0.0.2")  # another client address
    per_client = enclave_stack.backend.config.max_sessions_per_client

    async def scenario() -> tuple[int, int]:
        await good.infer(x)  # attests once: a live session
        flood = await asyncio.to_thread(
            lambda: [_attest(enclave_stack, flooder) for _ in range(3 * per_client)]
        )
        await good.infer(x)  # the same session still works: no re-attestation
        await good.close()
        return good.attestations, flood.count(200)

    attestations, accepted = asyncio.run(scenario())
    stats, _ = enclave_stack.loop.run(host.supervisor.call("stats"))
    assert attestations == 1 and accepted == 3 * per_client
    # each address holds at most its own newest sessions (every other test's are 127.0.0.1's)
    assert stats["sessions"] <= 2 * per_client


def test_a_host_with_a_token_serves_only_clients_that_hold_it(
    enclave_stack: SimpleNamespace,
) -> None:
    host = enclave_stack.host
    saved = host.limits
    host.limits = ServerLimits(token="s3cret-token-0123456789")
    policy = simulated_policy(enclave_stack.backend.platform.public_raw)
    x = torch.rand(1, *host.info.input_shape)

    async def call(token: str | None) -> object:
        client = EnclaveClient(enclave_stack.url, policy, host.info.measurement, token=token)
        try:
            return await client.infer(x)
        finally:
            await client.close()

    try:
        with pytest.raises(RemoteError) as err:
            asyncio.run(call(None))
        assert err.value.code == "unauthorized" and err.value.status == 401
        with pytest.raises(RemoteError):
            asyncio.run(call("wrong-token-0123456789"))
        assert asyncio.run(call("s3cret-token-0123456789")).logits.shape == (1, 10)
        status, _, _ = RawHttp(enclave_stack.url).request("GET", "/healthz")
        assert status == 200  # health probes stay open
    finally:
        host.limits = saved
