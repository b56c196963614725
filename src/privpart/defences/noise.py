"""`noise`: calibrated Gaussian noise added at the cut, in training AND at inference
(Shredder-style noise without the learned part).

    f~ = f + sigma * c * e,   e ~ N(0, I),   c = per-channel std of the clean features

c is measured once on the defender's training data, so `sigma` reads as a noise-to-signal
ratio: sigma = 1 adds noise as strong as the features themselves, at every cut alike. The head
stays frozen (a trainable head could simply scale its features up until the fixed noise stops
mattering); only the tail is fine-tuned, on noisy features, to keep the task.

At inference the noise belongs to the head (`privpart.models.wrappers`: `NoisyOutput(inner,
CutNoise)` at the cut). "Exact split" means: for the same RNG state, tail(head(x)) is
bit-identical to model(x) (the same draws, in the same order); with sigma = 0 it is the
deterministic function. Loading a defended checkpoint rebuilds the wrapper from meta.json
(`wrapper: cut-noise`) before the weights are loaded; nothing is unpickled.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from privpart.defences.base import Defence, DefenceContext
from privpart.defences.registry import DEFENCES
from privpart.errors import PrivpartError
from privpart.models import build_model
from privpart.models.wrappers import CutNoise, wrap_at
from privpart.params import Param
from privpart.partition import Partition

CALIBRATION_SAMPLES = 1024


def calibrate(features: Tensor) -> Tensor:
    """Per-channel standard deviation of clean features, shaped to broadcast over a batch."""
    dims = [0, *range(2, features.dim())]
    std = features.float().std(dims, keepdim=True)
    return std.clamp_min(1e-6 * float(std.max()) + 1e-12)


@DEFENCES.register("noise")
class NoiseDefence(Defence):
    name: ClassVar[str] = "noise"
    summary: ClassVar[str] = "calibrated Gaussian noise at the cut, in training and inference"
    wrapper: ClassVar[str | None] = "cut-noise"
    params: ClassVar[dict[str, Param]] = {
        "sigma": Param(
            1.0, "noise std relative to the features' per-channel std", float, 0.0, exclusive=True
        ),
    }

    def check(self, ctx: DefenceContext) -> None:
        """The noise attaches to the module whose output is the cut: verify it, before training."""
        name = ctx.cut.name
        ctx.require_module("noise defence attaches to a module's output")
        probe = wrap_at(build_model(ctx.spec), name, CutNoise(torch.ones(1), 0.0))
        head = Partition(probe, ctx.partition.input_shape).split(name).head
        if not any(n.op == "call_module" and str(n.target) == f"{name}.noise"
                   for n in head.graph.nodes):  # fmt: skip
            raise PrivpartError(
                f"cut {name!r} does not end where module {name!r} returns",
                "choose another cut for the noise defence (e.g. a block boundary)",
            )

    def setup(self, ctx: DefenceContext) -> None:
        ctx.split.head.eval()
        with torch.no_grad():
            x = ctx.inputs(ctx.train_index[:CALIBRATION_SAMPLES])
            scale = calibrate(ctx.split.head(x))
        self.noise = CutNoise(scale, self.values["sigma"])
        head_params = {id(p) for p in ctx.split.head.parameters()}
        for p in ctx.split.head.parameters():
            p.requires_grad_(False)
        self.tail_params = [p for p in ctx.split.tail.parameters() if id(p) not in head_params]
        ctx.state["calibration"] = {
            "samples": int(x.shape[0]),
            "mean_channel_std": float(scale.mean()),
        }

    def trainable(self, ctx: DefenceContext) -> list[nn.Parameter]:
        return self.tail_params

    def loss(self, ctx: DefenceContext, x: Tensor, y: Tensor, idx: Tensor) -> tuple[Tensor, dict]:
        ctx.split.head.eval()  # frozen: no batch-norm statistics drift either
        with torch.no_grad():
            f = self.noise(ctx.split.head(x))
        task = F.cross_entropy(ctx.split.tail(f), y)
        return task, {"task": task.item()}

    def deploy(self, ctx: DefenceContext) -> nn.Module:
        for p in ctx.model.parameters():
            p.requires_grad_(True)
        return wrap_at(ctx.model, ctx.cut.name, self.noise)

