"""The tail as a Ray Serve deployment (two replicas on a local two-CPU Ray): the unchanged privpart
clients get correct answers from both replicas, errors are the single server's JSON errors, and
load loses nothing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
import torch

from privpart.cluster import Resources
from privpart.errors import PrivpartError
from privpart.runtime import frames
from privpart.runtime.channel.attestation import read_pin
from privpart.runtime.client import DeviceClient, EnclaveClient, TailClient
from privpart.runtime.client.load import closed_loop
from privpart.runtime.enclave import EnclaveConfig, PlatformKeys
from privpart.runtime.enclave.host import EnclaveHost, build_enclave_app
from privpart.runtime.enclave.process import ProcessBackend
from privpart.runtime.enclave.supervisor import launch
from privpart.runtime.head import SplitHead
from privpart.runtime.server import BatchConfig, TailConfig
from privpart.runtime.server.runner import start_site
from tests.ray_support import local_ray
from tests.runtime.helpers import (
    CLI,
    LoopThread,
    RawHttp,
    ServerProcess,
    free_port,
    get_json,
    simulated_policy,
)

pytest.importorskip("ray.serve", reason="the ray extra is not installed (privpart[ray])")
from privpart.runtime.server.ray_serve import REPLICA_HEADER, Scale, deploy_tail  # noqa: E402

FRAME = {"Content-Type": "application/x-privpart-frame"}
CUT = "block2"


# The CLI tests come first: they start their own private Ray, before the module's cluster is up.


def test_cli_serve_ray_end_to_end(
    runtime_checkpoint: Path, tiny_split: SplitHead, tiny_model: torch.nn.Module, tmp_path: Path
) -> None:
    """`privpart serve --ray --replicas 2` as a user runs it: serves, then drains on SIGTERM."""
    port = free_port()
    args = ["serve", "--checkpoint", str(runtime_checkpoint), "--cut", CUT, "--port", str(port)]
    server = ServerProcess([*args, "--ray", "--replicas", "2"], f"http://127.0.0.1:{port}",
                           tmp_path / "serve.log")  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server.proc = subprocess.Popen(
        [*CLI, *server.args],
        stdout=server.log.open("ab"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        # Ray's proxy listens (plain-text 404s) before the replicas are up: wait for real JSON.
        deadline = time.monotonic() + 240
        while True:
            assert server.proc.poll() is None, server.log_text()
            try:
                status, info = get_json(server.url + "/v1/info")
                break
            except (OSError, json.JSONDecodeError):
                assert time.monotonic() < deadline, server.log_text()
                time.sleep(0.5)
        assert status == 200 and info["ray_serve"]["replicas"] == 2, info
        x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(3))

        async def ask() -> torch.Tensor:
            client = DeviceClient(tiny_split, server.url)
            try:
                await client.check_tail()
                return (await client.infer(x)).logits
            finally:
                await client.close()

        logits = asyncio.run(ask())
        with torch.inference_mode():
            assert torch.allclose(logits, tiny_model(x), atol=1e-5, rtol=1e-4)
        assert server.terminate(timeout=120) == 0, server.log_text()
        assert "stopped" in server.log_text()
    finally:
        server.kill()


def test_cli_serve_ray_fails_before_starting_ray(
    runtime_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import ray

    from privpart.cli import main

    base = ["privpart", "serve", "--checkpoint", str(runtime_checkpoint)]
    for extra, message in (
        (["--cut", "nope", "--ray"], "not a legal cut"),
        (["--cut", CUT, "--ray", "--autoscale", "4,1"], "--autoscale needs"),
        (["--cut", CUT, "--device", "cuda", "--ray", "--ray-resources", "gpus=0"], "GPU"),
        (["--cut", CUT, "--ray", "nowhere"], "not a Ray address"),
    ):
        monkeypatch.setattr(sys, "argv", [*base, *extra])
        with pytest.raises(SystemExit) as exit_:
            main()
        assert exit_.value.code == 2
        assert message in " ".join(capsys.readouterr().err.split()), extra
        assert not ray.is_initialized()


@pytest.fixture(scope="module")
def ray_tail(runtime_checkpoint: Path) -> Iterator[SimpleNamespace]:
    with local_ray() as ray:
        from ray import serve

        cfg = TailConfig(batch=BatchConfig(max_batch=8, max_wait_ms=2, max_queue=64), device="cpu")
        tail = deploy_tail(
            runtime_checkpoint, CUT, cfg, Scale(2), Resources(cpus=1), port=free_port()
        )
        http = RawHttp(tail.url)
        try:
            yield SimpleNamespace(ray=ray, tail=tail, url=tail.url, http=http, split=tail.split)
        finally:
            http.close()
            tail.stop()
            serve.shutdown()


def _features(split: SplitHead, batch: int, seed: int) -> torch.Tensor:
    return torch.rand(batch, *split.info.cut.shape, generator=torch.Generator().manual_seed(seed))


def test_unchanged_clients_get_correct_answers_from_both_replicas(
    ray_tail: SimpleNamespace, tiny_split: SplitHead, tiny_model: torch.nn.Module
) -> None:
    async def scenario() -> Counter:
        async with aiohttp.ClientSession() as session:
            tail = TailClient(ray_tail.url, 30, session)
            device = DeviceClient(tiny_split, ray_tail.url, 30, session)
            info = await device.check_tail()  # the client's own cut/shape check passes
            assert info["ray_serve"]["replicas"] == 2 and info["cut"] == CUT
            for seed in range(4):
                x = torch.rand(
                    1 + seed % 3, 1, 28, 28, generator=torch.Generator().manual_seed(seed)
                )
                result = await device.infer(x)
                with torch.inference_mode():
                    expected = tiny_model(x)
                assert torch.allclose(result.logits, expected, atol=1e-5, rtol=1e-4)
                assert "tail_compute" in result.timing
                feats = _features(tiny_split, 2, seed)
                with torch.inference_mode():
                    assert torch.allclose(
                        await tail.infer(feats), tiny_split.tail(feats), atol=1e-5
                    )
            replicas: Counter = Counter()

            async def one(i: int) -> None:
                frame = frames.encode(_features(tiny_split, 1, i))
                async with session.post(ray_tail.url + "/v1/infer", data=frame, headers=FRAME) as r:
                    assert r.status == 200
                    replicas[r.headers[REPLICA_HEADER]] += 1

            await asyncio.gather(*(one(i) for i in range(48)))
            return replicas

    replicas = asyncio.run(scenario())
    assert len(replicas) == 2, f"Ray Serve used only {dict(replicas)}"


def test_errors_are_the_single_servers_json_errors(ray_tail: SimpleNamespace) -> None:
    http = ray_tail.http
    for method, path, code, error in (
        ("GET", "/nope", 404, "not_found"),
        ("GET", "/v1/infer", 405, "method_not_allowed"),
    ):
        status, body, _ = http.request(method, path)
        assert status == code and json.loads(body)["error"] == error
    status, body, _ = http.request("POST", "/v1/infer", b"XXXX" + bytes(60), FRAME)
    assert status == 400 and json.loads(body)["error"] == "bad_magic"
    wrong = frames.encode(torch.zeros(1, 3, 3, 3))
    status, body, _ = http.request("POST", "/v1/infer", wrong, FRAME)
    assert status == 400 and json.loads(body)["error"] == "wrong_shape" and json.loads(body)["hint"]
    big = frames.encode(_features(ray_tail.split, 9, 0))  # max_batch is 8
    status, body, _ = http.request("POST", "/v1/infer", big, FRAME)
    assert status == 413 and json.loads(body)["error"] == "too_large"
    status, body, _ = http.request("GET", "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body, raw_headers = http.request("GET", "/metrics")
    headers = {k.lower(): v for k, v in raw_headers.items()}  # HTTP header names: any case
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "privpart_tail_requests_total" in body.decode() and headers[REPLICA_HEADER.lower()]


def test_enclave_host_relays_to_the_ray_tail(
    ray_tail: SimpleNamespace,
    tiny_split: SplitHead,
    tiny_model: torch.nn.Module,
    platform: PlatformKeys,
) -> None:
    """Seed A end to end: attested enclave client -> enclave host -> Ray Serve tail."""
    loop = LoopThread()
    backend = ProcessBackend(platform, EnclaveConfig(threads=1))
    sealed = backend.seal(tiny_split, platform.directory / "heads")
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(7))

    async def scenario() -> torch.Tensor:
        supervisor = launch(backend, sealed, tiny_split.info.measurement)
        await supervisor.start()
        host = EnclaveHost(backend, supervisor, tiny_split.info, ray_tail.url)
        runner, url = await start_site(build_enclave_app(host), "127.0.0.1", 0)
        policy = simulated_policy(read_pin(platform.public_file))
        client = EnclaveClient(url, policy, tiny_split.info.measurement)
        try:
            return (await client.infer(x)).logits
        finally:
            await client.close()
            await runner.cleanup()

    try:
        logits = loop.run(scenario())
    finally:
        loop.close()
    with torch.inference_mode():
        assert torch.allclose(logits, tiny_model(x), atol=1e-5, rtol=1e-4)


def test_closed_loop_load_loses_nothing(ray_tail: SimpleNamespace, tiny_split: SplitHead) -> None:
    async def scenario() -> dict:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            client = TailClient(ray_tail.url, 30, session)

            async def request(c: int, i: int) -> bool:
                feats = _features(tiny_split, 1 + i % 2, c * 10_007 + i)
                with torch.inference_mode():
                    expected = tiny_split.tail(feats)
                return torch.allclose(await client.infer(feats), expected, atol=1e-5)

            report = await closed_loop(8, 4.0, request, max_requests=2_000)
            return report.to_json()

    r = asyncio.run(scenario())
    assert r["lost"] == 0 and r["mismatched"] == 0 and r["errors"] == {}, r
    assert r["ok"] >= 16, r


def test_scale_options_are_validated() -> None:
    assert Scale.parse(2, None).deployment_options() == {"num_replicas": 2}
    auto = Scale.parse(2, "1,4").deployment_options()["autoscaling_config"]
    assert auto == {"min_replicas": 1, "max_replicas": 4, "initial_replicas": 2}
    passed = Scale.parse(1, '{"min_replicas": 0, "max_replicas": 3, "target_ongoing_requests": 4}')
    assert passed.autoscale == {
        "min_replicas": 0,
        "max_replicas": 3,
        "target_ongoing_requests": 4,
        "initial_replicas": 1,
    }
    for bad in ("4,1", "x", "1,2,3", "{}", '{"max_replicas": 0}'):
        with pytest.raises(PrivpartError, match="--autoscale"):
            Scale.parse(1, bad)
