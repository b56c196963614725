"""Session-table exhaustion over real sockets: attestation floods from many loopback addresses
(and from a client's own address) against a real enclave host and worker process with a small
table, while a well-behaved client keeps its session and new addresses keep getting one."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import torch

from privpart.runtime.channel.handshake import ClientHello
from privpart.runtime.client import EnclaveClient
from privpart.runtime.enclave import EnclaveConfig, PlatformKeys
from privpart.runtime.enclave.host import EnclaveHost, build_enclave_app
from privpart.runtime.enclave.process import ProcessBackend
from privpart.runtime.enclave.supervisor import launch
from privpart.runtime.head import SplitHead
from privpart.runtime.server import TailConfig, build_tail_app
from privpart.runtime.server.runner import start_site
from tests.runtime.helpers import LoopThread, RawHttp, loopback_sources, simulated_policy

TOTAL, PER_ADDRESS, UNUSED_TTL_S = 64, 4, 1.5


@pytest.fixture(scope="module")
def small_table(tiny_split: SplitHead, platform: PlatformKeys) -> Iterator[SimpleNamespace]:
    loop = LoopThread()
    config = EnclaveConfig(
        threads=1,
        max_sessions=TOTAL,
        max_sessions_per_client=PER_ADDRESS,
        session_unused_ttl_s=UNUSED_TTL_S,
    )
    backend = ProcessBackend(platform, config)
    sealed = backend.seal(tiny_split, platform.directory / "heads")

    async def up() -> SimpleNamespace:
        tail_runner, tail_url = await start_site(
            build_tail_app(tiny_split, TailConfig(device="cpu")), "127.0.0.1", 0
        )
        supervisor = launch(backend, sealed, tiny_split.info.measurement)
        await supervisor.start()
        host = EnclaveHost(backend, supervisor, tiny_split.info, tail_url)
        runner, url = await start_site(build_enclave_app(host), "127.0.0.1", 0)
        return SimpleNamespace(url=url, host=host, runners=[runner, tail_runner])

    stack = loop.run(up())
    stack.policy = simulated_policy(platform.public_raw)
    stack.loop = loop
    yield stack

    async def down() -> None:
        for runner in stack.runners:
            await runner.cleanup()

    loop.run(down())
    loop.close()


def attest_from(url: str, source: str, n: int) -> list[int]:
    http = RawHttp(url, source=source)
    try:
        return [
            http.request("POST", "/v1/attest", json.dumps(ClientHello().to_json()).encode())[0]
            for _ in range(n)
        ]
    finally:
        http.close()


def sessions(stack: SimpleNamespace) -> int:
    stats, _ = stack.loop.run(stack.host.supervisor.call("stats"))
    return int(stats["sessions"])


def test_floods_from_many_addresses_and_from_a_clients_own_address_end_no_used_session(
    small_table: SimpleNamespace,
) -> None:
    t = small_table
    x = torch.rand(1, *t.host.info.input_shape)
    client = EnclaveClient(t.url, t.policy, t.host.info.measurement)  # from 127.0.0.1

    async def scenario() -> dict[str, object]:
        await client.infer(x)  # attests once and uses its session
        # 1. a burst from the client's own address (another user behind its NAT): replaces
        #    the burst's own unused sessions at the per-address limit
        burst = await asyncio.to_thread(attest_from, t.url, "127.0.0.1", 3 * PER_ADDRESS)
        await client.infer(x)
        # 2. 20 addresses x 5 attestations (100 > the table's 64), never used
        flood = await asyncio.to_thread(
            lambda: [s for src in loopback_sources(20) for s in attest_from(t.url, src, 5)]
        )
        # 3. a new address still gets a session, at once
        start = time.perf_counter()
        newcomer = await asyncio.to_thread(attest_from, t.url, "127.0.0.100", 1)
        newcomer_s = time.perf_counter() - start
        await client.infer(x)  # the same session all along, never re-attested
        await client.close()
        return {"flood": flood, "newcomer": newcomer, "s": newcomer_s, "burst": burst}

    out = asyncio.run(scenario())
    assert out["burst"] == [200] * (3 * PER_ADDRESS)
    assert out["flood"].count(200) == 100  # type: ignore[attr-defined]
    assert out["newcomer"] == [200] and out["s"] < 2.0  # type: ignore[operator]
    assert client.attestations == 1  # no flood ended its session
    assert sessions(t) == TOTAL
    time.sleep(UNUSED_TTL_S + 0.3)  # the flood's sessions were never used: they expire soon
    attest_from(t.url, "127.0.0.101", 1)  # an attestation sweeps what is due
    assert sessions(t) == 2  # the client's, and the sweeping attestation's own
