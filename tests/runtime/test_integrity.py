"""Tail integrity (`--verify-tail`): the trusted side recomputes a random share of the tail's
answers and withholds one that differs, in enclave mode (the worker) and device mode (the
client), against a real tail server on loopback whose model forges right-shaped logits."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from privpart.errors import PrivpartError
from privpart.runtime.client import DeviceClient, EnclaveClient
from privpart.runtime.enclave import EnclaveConfig, PlatformKeys
from privpart.runtime.enclave.base import tail_weights_path
from privpart.runtime.enclave.host import EnclaveHost, build_enclave_app
from privpart.runtime.enclave.process import ProcessBackend
from privpart.runtime.enclave.supervisor import launch
from privpart.runtime.errors import RuntimeFailure
from privpart.runtime.head import SplitHead
from privpart.runtime.integrity import FORGERY, TailCheck, Tolerance, compare
from privpart.runtime.server import TailConfig, build_tail_app
from privpart.runtime.server.runner import start_site
from tests.runtime.helpers import LoopThread, simulated_policy

# At rate 0.1 a forging tail escapes n checked-or-not requests with probability 0.9^n.
SAMPLED_RATE, MAX_REQUESTS = 0.1, 100
assert 0.9**MAX_REQUESTS < 3e-5  # the bound the sampled tests rely on (2.7e-5)


class ForgingTail(torch.nn.Module):
    """What a malicious tail server runs: the honest tail, then a confident answer for another
    class (right shape, dtype and batch: every frame check passes)."""

    def __init__(self, tail: torch.nn.Module) -> None:
        super().__init__()
        self.tail = tail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tail(x)
        return torch.nn.functional.one_hot((y.argmax(1) + 1) % y.shape[1], y.shape[1]) * 20.0


def forged(split: SplitHead) -> SplitHead:
    return SplitHead(split.head, ForgingTail(split.tail), split.info)


@contextlib.contextmanager
def stderr_to(log: Path) -> Iterator[None]:
    """Processes started inside inherit `log` as their stderr (the worker's alarm lines)."""
    saved = os.dup(2)
    with log.open("ab") as fh:
        os.dup2(fh.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def alarms(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "ALARM" in line]


@pytest.fixture(scope="module")
def stack(tiny_split: SplitHead, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """An honest and a forging tail server, and enclave workers verifying at rate 1 and 0.1,
    each behind hosts that relay to either tail."""
    loop = LoopThread()
    platform = PlatformKeys.load_or_create(tmp_path_factory.mktemp("platform"))
    backends = {
        rate: ProcessBackend(platform, EnclaveConfig(threads=1, verify_tail=rate))
        for rate in (1.0, SAMPLED_RATE)
    }
    heads = tmp_path_factory.mktemp("heads")
    log = heads / "workers.log"

    async def up() -> SimpleNamespace:
        runners, tails = [], {}
        for name, split in (("honest", tiny_split), ("forging", forged(tiny_split))):
            runner, tails[name] = await start_site(
                build_tail_app(split, TailConfig(device="cpu")), "127.0.0.1", 0
            )
            runners.append(runner)
        hosts, supervisors = {}, []
        for rate, backend in backends.items():
            sealed = backend.seal(tiny_split, heads / str(rate))
            supervisor = launch(backend, sealed, tiny_split.info.measurement)
            with stderr_to(log):
                await supervisor.start()
            supervisors.append(supervisor)
            for name, url in tails.items():
                host = EnclaveHost(backend, supervisor, tiny_split.info, url)
                app = build_enclave_app(host)
                app.on_cleanup.clear()  # the workers are stopped once, below
                runner, host_url = await start_site(app, "127.0.0.1", 0)
                runners.append(runner)
                hosts[(rate, name)] = SimpleNamespace(url=host_url, host=host)
        return SimpleNamespace(tails=tails, hosts=hosts, runners=runners, sup=supervisors)

    s = loop.run(up())
    s.loop, s.platform, s.log = loop, platform, log
    yield s

    async def down() -> None:
        for runner in s.runners:
            await runner.cleanup()
        for supervisor in s.sup:
            await supervisor.stop()

    loop.run(down())
    loop.close()


async def requests(client: EnclaveClient | DeviceClient, n: int) -> list:
    """Up to `n` requests; stops at the first failure, which is returned last."""
    out: list = []
    try:
        for _ in range(n):
            try:
                out.append(await client.infer(torch.rand(1, 1, 28, 28)))
            except RuntimeFailure as exc:
                out.append(exc)
                break
    finally:
        await client.close()
    return out


def enclave_run(stack: SimpleNamespace, split: SplitHead, rate: float, tail: str, n: int) -> list:
    """Up to `n` requests through the enclave host; stops at the first failure, returned last."""
    policy = simulated_policy(stack.platform.public_raw)
    target = stack.hosts[(rate, tail)]

    client = EnclaveClient(target.url, policy, split.info.measurement)
    return stack.loop.run(requests(client, n))


def device_run(stack: SimpleNamespace, split: SplitHead, rate: float, tail: str, n: int) -> tuple:
    client = DeviceClient(split, stack.tails[tail], verify_tail=rate)
    return stack.loop.run(requests(client, n)), client.check


def is_forgery(result: object) -> bool:
    return isinstance(result, RuntimeFailure) and result.code == FORGERY


def test_enclave_mode_at_rate_1_withholds_the_first_forged_answer(
    stack: SimpleNamespace, tiny_split: SplitHead
) -> None:
    host = stack.hosts[(1.0, "forging")].host
    before = (host.tail_checks.get(), host.tail_forgeries.get())
    alarms_before = len(alarms(stack.log))
    results = enclave_run(stack, tiny_split, 1.0, "forging", 3)
    assert len(results) == 1 and is_forgery(results[0]), results
    assert results[0].status == 502 and "withheld" in results[0].message  # PUBLIC_5XX
    # the message and the alarm pass through the untrusted host: no trace of the prediction
    assert "top class" not in results[0].message
    assert (host.tail_checks.get(), host.tail_forgeries.get()) == (before[0] + 1, before[1] + 1)
    assert "privpart_enclave_tail_forgeries_total 1" in host.metrics.render()
    new = alarms(stack.log)[alarms_before:]
    assert len(new) == 1 and FORGERY in new[0]  # one line, from the worker
    assert "top class" not in new[0] and "differ by" not in new[0]


def test_enclave_mode_at_rate_1_passes_an_honest_tail_and_counts_each_check(
    stack: SimpleNamespace, tiny_split: SplitHead, tiny_model: torch.nn.Module
) -> None:
    host = stack.hosts[(1.0, "honest")].host
    before = host.tail_checks.get()
    results = enclave_run(stack, tiny_split, 1.0, "honest", 5)
    assert all(not isinstance(r, Exception) for r in results), results
    assert host.tail_checks.get() == before + 5
    assert all("tail_roundtrip" in r.timing and "enclave_verify_tail" in r.timing for r in results)
    assert host.describe()["verify_tail"] == 1.0
    assert (
        host.describe()["tail_measurement"]
        == stack.hosts[(1.0, "honest")].host.backend.tail_measurement
    )


def test_enclave_mode_at_rate_0_1_detects_within_100_requests(
    stack: SimpleNamespace, tiny_split: SplitHead
) -> None:
    """P(no check among 100 forged answers) = 0.9^100 = 2.7e-5: a failure here is a bug."""
    results = enclave_run(stack, tiny_split, SAMPLED_RATE, "forging", MAX_REQUESTS)
    assert is_forgery(results[-1]), f"{len(results)} requests, no detection"
    # the answers before it were forged and, unchecked, passed: sampling is all that caught it
    assert all(not isinstance(r, Exception) for r in results[:-1])


def test_device_mode_at_rate_1_withholds_the_first_forged_answer(
    stack: SimpleNamespace, tiny_split: SplitHead, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("ERROR", "privpart.runtime.integrity"):
        results, check = device_run(stack, tiny_split, 1.0, "forging", 3)
    assert [r.message.startswith(f"ALARM {FORGERY}") for r in caplog.records] == [True]
    assert len(results) == 1 and is_forgery(results[0])
    assert "top class" in results[0].message  # the client is the trusted side: full detail
    assert (check.checked, check.forgeries) == (1, 1)
    honest, check = device_run(stack, tiny_split, 1.0, "honest", 5)
    assert all("verify_tail" in r.timing for r in honest)
    assert (check.checked, check.forgeries) == (5, 0)


def test_device_mode_at_rate_0_1_detects_within_100_requests(
    stack: SimpleNamespace, tiny_split: SplitHead
) -> None:
    results, check = device_run(stack, tiny_split, SAMPLED_RATE, "forging", MAX_REQUESTS)
    assert is_forgery(results[-1]) and check.forgeries == 1, f"{len(results)} requests"


def test_at_rate_0_nothing_is_checked_and_a_forgery_passes(
    stack: SimpleNamespace, tiny_split: SplitHead
) -> None:
    """What the docs say of the default: answers are not integrity-protected."""
    results, check = device_run(stack, tiny_split, 0.0, "forging", 5)
    assert len(results) == 5 and check.checked == 0
    assert all(float(r.logits.max()) == 20.0 for r in results)  # the forged answer


def test_draws_are_unpredictable_and_at_the_rate() -> None:
    check = TailCheck(torch.nn.Identity(), SAMPLED_RATE)
    hits = sum(check.pick() for _ in range(20_000))
    assert abs(hits - 2000) < 6 * math.sqrt(20_000 * 0.1 * 0.9)  # 6 sigma
    assert all(TailCheck(torch.nn.Identity(), 1.0).pick() for _ in range(100))
    assert not any(TailCheck(None, 0.0).pick() for _ in range(100))
    with pytest.raises(PrivpartError, match="between 0 and 1"):
        TailCheck(torch.nn.Identity(), 1.5)


def test_a_bf16_tail_passes_the_default_tolerance_and_a_forgery_does_not(
    tiny_split: SplitHead,
) -> None:
    """The tolerance admits an honest reduced-precision tail (bf16 autocast) and batching, and
    refuses logits pushed towards another class."""
    torch.manual_seed(1)
    features = tiny_split.head(torch.rand(16, 1, 28, 28)).detach()
    with torch.inference_mode():
        want = tiny_split.tail(features)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = tiny_split.tail(features).float()
        one_by_one = torch.cat([tiny_split.tail(f[None]) for f in features])
    assert compare(bf16, want) is None and compare(one_by_one, want) is None
    assert not torch.equal(bf16, want)  # the tolerance is doing work
    pushed = want.clone()
    pushed[3, (want[3].argmax() + 1) % 10] += 0.5 * float(want[3].abs().max())
    bad = compare(pushed, want)
    assert bad is not None and bad.row == 3
    assert compare(want.nan_to_num().clone().fill_(math.nan), want) is not None
    assert compare(want * 1.2, want, Tolerance(rtol=0.03)) is not None


def test_the_worker_refuses_tail_weights_that_do_not_measure_as_its_arguments_say(
    tiny_split: SplitHead, tmp_path: Path
) -> None:
    """The tail the worker verifies with is loaded and re-measured like the head: a host that
    swaps the file (to make forged answers look honest) stops the worker from starting."""
    platform = PlatformKeys.load_or_create(tmp_path / "p")
    backend = ProcessBackend(platform, EnclaveConfig(threads=1, verify_tail=1.0))
    sealed = backend.seal(tiny_split, tmp_path / "heads")
    argv = backend.worker_args(sealed, tiny_split.info.measurement)
    assert argv[argv.index("--expect-tail-measurement") + 1] == backend.tail_measurement
    weights = tail_weights_path(sealed)
    state = load_file(str(weights))
    name = next(iter(state))
    state[name] = state[name] + 0.01
    save_file(state, str(weights))
    supervisor = launch(backend, sealed, tiny_split.info.measurement)

    async def start() -> None:
        try:
            await supervisor.start()
        finally:
            await supervisor.stop()

    with pytest.raises(PrivpartError, match="the tail weights measure") as err:
        asyncio.run(start())
    assert backend.tail_measurement in err.value.message  # both full values


def test_infer_says_where_verification_belongs_in_enclave_mode(tmp_path: Path) -> None:
    """In enclave mode the worker holds the features, so it verifies: the client flag is refused
    with what to do instead (exit 2 through `privpart.cli.main`)."""
    from typer.testing import CliRunner

    from privpart.cli import app

    result = CliRunner().invoke(
        app, ["infer", "x.png", "--enclave", "http://127.0.0.1:9", "--measurement", "ab",
              "--verify-tail", "0.5"],
    )  # fmt: skip
    assert isinstance(result.exception, PrivpartError), result.output
    assert "privpart enclave ... --verify-tail RATE" in result.exception.hint
    args = ["enclave", "--checkpoint", str(tmp_path), "--cut", "b", "--tail", "http://127.0.0.1:9"]
    bad = CliRunner().invoke(app, [*args, "--verify-tail", "2"])
    assert bad.exit_code == 2 and "verify-tail" in bad.output


@pytest.mark.parametrize("checkpoint", ["runtime_checkpoint", "bottleneck_checkpoint"])
def test_the_worker_rebuilds_the_tail_the_client_splits(
    checkpoint: str, request: pytest.FixtureRequest
) -> None:
    """The worker's tail (rebuilt from the head's description and the tail's weights) measures
    as the tail `split_checkpoint` makes, for a plain and a defended (noisy bottleneck) model."""
    from privpart.runtime.head import (
        head_state,
        measure_head,
        measure_tail,
        rebuild_tail,
        split_checkpoint,
    )

    split = split_checkpoint(request.getfixturevalue(checkpoint), "block2")
    tail = rebuild_tail(split.info, head_state(split.tail))
    assert measure_head(tail, split.info.cut.shape) == measure_tail(split)


def test_infer_on_the_device_verifies_every_answer_with_verify_tail_1(
    process_stack: SimpleNamespace, tmp_path: Path
) -> None:
    """`privpart infer --on-device --verify-tail 1` against a real `privpart serve`: the honest
    tail passes and every request says it was recomputed."""
    import json

    import numpy as np
    from PIL import Image
    from typer.testing import CliRunner

    from privpart.cli import app

    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(image)
    result = CliRunner().invoke(
        app, ["infer", str(image), "--on-device", "--tail", process_stack.tail_url, "--checkpoint",
              str(process_stack.checkpoint), "--cut", "block2", "--verify-tail", "1",
              "--repeat", "3", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["verify_tail"] == 1.0 and "verify_tail" in out["results"][0]["timing_ms"]
