"""The stream transport over TLS with the tail's certificate pinned, and from the enclave
worker (a real worker process) to a stream tail: the same answers, the same refusals as HTTPS."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from privpart.errors import PrivpartError
from privpart.runtime.client import DeviceClient, EnclaveClient
from privpart.runtime.enclave import EnclaveConfig, PlatformKeys
from privpart.runtime.enclave.host import EnclaveHost, build_enclave_app
from privpart.runtime.enclave.process import ProcessBackend
from privpart.runtime.enclave.supervisor import launch
from privpart.runtime.errors import RemoteError, TransportError
from privpart.runtime.head import SplitHead
from privpart.runtime.server import TailConfig, build_tail_app
from privpart.runtime.server.runner import start_site
from privpart.runtime.stream.server import tail_stream_site
from privpart.runtime.tls import cert_fingerprint, server_context
from tests.runtime.helpers import LoopThread, simulated_policy
from tests.runtime.test_tls import self_signed


def stream_tail(loop: LoopThread, split: SplitHead, cert: tuple[Path, Path] | None) -> tuple:
    async def up() -> tuple:
        app = build_tail_app(split, TailConfig(device="cpu"))
        tls = server_context(*cert) if cert else None
        runner, _ = await start_site(app, "127.0.0.1", 0, tls=tls)
        site = tail_stream_site(app, "127.0.0.1", 0, tls)
        return runner, site, await site.start(runner)

    return loop.run(up())


def test_tls_streams_are_reached_only_with_the_pinned_certificate(
    tmp_path: Path, tiny_split: SplitHead, tiny_model: torch.nn.Module
) -> None:
    loop = LoopThread()
    good, rogue = self_signed(tmp_path, "tail"), self_signed(tmp_path, "impostor")
    pin = cert_fingerprint(good[0])
    tails = {name: stream_tail(loop, tiny_split, cert) for name, cert in
             (("tls", good), ("impostor", rogue), ("plain", None))}  # fmt: skip
    urls = {name: t[2] for name, t in tails.items()}
    assert urls["tls"].startswith("tls://") and urls["plain"].startswith("tcp://")
    x = torch.rand(2, *tiny_split.info.input_shape)
    with torch.inference_mode():
        want = tiny_model(x)

    async def device(target: str, tls_pin: bytes | None) -> torch.Tensor:
        client = DeviceClient(tiny_split, target, tls_pin=tls_pin)
        try:
            return (await client.infer(x)).logits
        finally:
            await client.close()

    platform = PlatformKeys.load_or_create(tmp_path / "p")
    backend = ProcessBackend(platform, EnclaveConfig(threads=1, tail_pin=pin.hex()))
    sealed = backend.seal(tiny_split, tmp_path / "heads")

    async def start() -> SimpleNamespace:
        supervisor = launch(backend, sealed, tiny_split.info.measurement)
        await supervisor.start()
        hosts = {}
        for name, target in urls.items():
            host = EnclaveHost(backend, supervisor, tiny_split.info, target)
            hosts[name] = await start_site(build_enclave_app(host), "127.0.0.1", 0)
        return SimpleNamespace(supervisor=supervisor, hosts=hosts)

    stack = loop.run(start())

    async def through(name: str) -> torch.Tensor:
        policy = simulated_policy(platform.public_raw)
        client = EnclaveClient(stack.hosts[name][1], policy, tiny_split.info.measurement)
        try:
            return (await client.infer(x)).logits
        finally:
            await client.close()

    try:
        assert torch.allclose(asyncio.run(device(urls["tls"], pin)), want, atol=1e-5)
        with pytest.raises(TransportError) as err:
            asyncio.run(device(urls["impostor"], pin))
        assert err.value.code == "tls_pin"
        with pytest.raises(PrivpartError, match="plain tcp:// stream"):
            asyncio.run(device(urls["plain"], pin))
        # the worker, pinned: exactly the tail's certificate, never a plain stream
        assert torch.allclose(asyncio.run(through("tls")), want, atol=1e-5)
        for name, code in (("impostor", "tail_tls"), ("plain", "tail_bad_url")):
            with pytest.raises(RemoteError) as err:
                asyncio.run(through(name))
            assert err.value.code == code, err.value.message
    finally:

        async def down() -> None:
            for runner, _ in stack.hosts.values():
                await runner.cleanup()  # the first cleanup stops the shared worker
            for runner, site, _ in tails.values():
                site.stop_listening()
                await runner.cleanup()
                await site.close_all()

        loop.run(down())
        loop.close()


def test_the_enclave_worker_sends_features_over_a_plain_stream(
    enclave_stack: SimpleNamespace, tiny_split: SplitHead, tiny_model: torch.nn.Module
) -> None:
    """The unpinned worker of the session's enclave stack, sent to a tcp:// tail: the same
    logits as the model, the tail's parts in the timing, and a dead stream tail a clear 502."""
    runner, site, url = stream_tail(enclave_stack.loop, tiny_split, None)
    host = EnclaveHost(enclave_stack.backend, enclave_stack.supervisor, tiny_split.info, url)
    app = build_enclave_app(host)
    app.on_cleanup.clear()  # the session's shared worker outlives this host
    host_runner, host_url = enclave_stack.loop.run(start_site(app, "127.0.0.1", 0))
    x = torch.rand(3, *tiny_split.info.input_shape)
    with torch.inference_mode():
        want = tiny_model(x)
    policy = simulated_policy(enclave_stack.backend.platform.public_raw)

    async def infer(n: int) -> list:
        client = EnclaveClient(host_url, policy, tiny_split.info.measurement)
        try:
            return [await client.infer(x) for _ in range(n)]
        finally:
            await client.close()

    try:
        results = asyncio.run(infer(3))  # the second and third reuse the worker's connection
        for r in results:
            assert torch.allclose(r.logits, want, atol=1e-5)
        assert "tail_compute" in results[-1].timing and "tail_read" in results[-1].timing
        site.stop_listening()
        enclave_stack.loop.run(site.close_all())  # the tail's stream goes away
        with pytest.raises(RemoteError) as err:
            asyncio.run(infer(1))
        assert err.value.code in ("tail_unreachable", "tail_disconnected")
        assert err.value.status == 502
    finally:

        async def down() -> None:
            await host_runner.cleanup()
            site.stop_listening()
            await runner.cleanup()

        enclave_stack.loop.run(down())
