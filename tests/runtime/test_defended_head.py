"""A defended split runs in the runtime exactly as audited: the bottleneck is part of the measured
head, the noise is drawn inside the trusted head from the OS CSPRNG, fresh for every request,
and the served accuracy is the audited one."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import torch

from privpart.models.wrappers import noise_modules
from privpart.runtime.client import DeviceClient
from privpart.runtime.head import HeadInfo, head_state, measure_head, rebuild_head, split_checkpoint
from privpart.runtime.server import TailConfig, build_tail_app
from privpart.runtime.server.runner import start_site
from privpart.training.target import Target

SERVE_CUT = "block2.noise"


def test_served_head_draws_secure_noise_fresh_per_request(bottleneck_checkpoint: Path) -> None:
    split = split_checkpoint(bottleneck_checkpoint, SERVE_CUT)
    (noise,) = noise_modules(split.head)
    assert noise.secure and float(noise.sigma) > 0
    x = torch.rand(1, *split.info.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.manual_seed(0)
        first = split.head(x)
        torch.manual_seed(0)  # torch's RNG state plays no part: the same seed, other draws
        second = split.head(x)
    assert first.shape[1] == 2 and not torch.equal(first, second)
    residual = (first - second).flatten() / (math.sqrt(2) * float(noise.sigma))
    assert 0.5 < float(residual.std()) < 1.5, "draws are N(0, sigma^2)"


def test_enclave_rebuild_keeps_the_bottleneck_and_its_measurement(
    bottleneck_checkpoint: Path,
) -> None:
    """The worker rebuilds the head from its description and weights alone (as sealed)."""
    split = split_checkpoint(bottleneck_checkpoint, SERVE_CUT)
    info = HeadInfo.from_json(split.info.to_json())
    assert info.defence is not None and info.defence["method"] == "bottleneck"
    head = rebuild_head(info, head_state(split.head))
    assert measure_head(head, info.input_shape) == split.info.measurement
    (noise,) = noise_modules(head)
    assert noise.secure, "the enclave's noise comes from the OS CSPRNG"
    x = torch.rand(2, *info.input_shape)
    assert not torch.equal(head(x), head(x))


def test_served_accuracy_matches_the_audited_one(bottleneck_checkpoint: Path) -> None:
    target = Target.load(bottleneck_checkpoint)
    split = split_checkpoint(bottleneck_checkpoint, SERVE_CUT)
    idx = target.splits.target_test
    x = target.dataset.inputs(idx, target.input_size)
    y = target.dataset.labels[idx]

    async def serve_and_infer() -> torch.Tensor:
        runner, url = await start_site(
            build_tail_app(split, TailConfig(device="cpu")), "127.0.0.1", 0
        )
        client = DeviceClient(split, url)
        try:
            await client.check_tail()
            outs = [(await client.infer(x[i : i + 16])).logits for i in range(0, len(idx), 16)]
        finally:
            await client.close()
            await runner.cleanup()
        return torch.cat(outs)

    served = float((asyncio.run(serve_and_infer()).argmax(1) == y).float().mean())
    audited = target.meta["test_accuracy"]
    n = len(idx)
    # both are means over the same images with independent noise draws
    slack = 4 * math.sqrt(2 * max(audited * (1 - audited), 0.05) / n)
    assert abs(served - audited) <= slack, (served, audited)
