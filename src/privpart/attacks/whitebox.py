"""`whitebox`: optimisation inversion with the head's weights (white-box).

For each victim, find x in [0, 1] (x = sigmoid(z)) minimising
    ||head(x) - f||^2 / ||f||^2  +  tv_weight * TV(x)
with Adam from the aux-mean image, batched over victims. The normalised feature loss makes one
TV weight work at every cut; the TV prior keeps the solution image-like where the head discards
information (pooling, ReLU).

Its work happens in `evaluate` (it needs the victims' features), so the budget governs the
inversion there; `fit` only reads the aux mean. Each step costs a forward and backward pass of
the head per victim, so by default it inverts the first 64 victims (`victims`), which buys 4x the
steps of inverting all 256 under the same clock. Gradients are taken w.r.t. the input only
(`torch.autograd.grad`): the head's weights are never touched.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import torch
from torch import Tensor

from privpart.attacks.base import Attack, AttackResult, FeatureSet, cosine_lr
from privpart.attacks.registry import ATTACKS
from privpart.attacks.scoring import score_reconstruction
from privpart.ui import progress


def total_variation(x: Tensor) -> Tensor:
    """Per-image mean absolute difference of neighbouring pixels (anisotropic TV)."""
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().flatten(1).mean(1)
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


@ATTACKS.register("whitebox")
class WhiteBoxAttack(Attack):
    name: ClassVar[str] = "whitebox"
    threat_model: ClassVar[str] = "white-box"
    default_seconds: ClassVar[float] = 30.0
    default_steps: ClassVar[int] = 1000
    defaults: ClassVar[dict[str, Any]] = {
        "victims": 64,  # victims inverted and scored (the first ones); None = all
        "chunk": 64,  # victims per forward/backward pass (memory)
        "lr": 0.1,
        "tv_weight": 0.05,
        "show_progress": False,
    }

    def fit(self, fs: FeatureSet) -> None:
        self.mean_image = fs.aux_inputs.float().mean(0, keepdim=True)
        self.fitted = True

    def invert(
        self, head: torch.nn.Module, targets: Tensor, label: str = ""
    ) -> tuple[Tensor, dict]:
        """Inputs whose head features match `targets`, within the budget."""
        self._require_fitted()
        torch.manual_seed(self.seed)
        n, chunk = targets.shape[0], max(1, int(self.params["chunk"]))
        init = torch.logit(self.mean_image.clamp(0.02, 0.98))
        zs = [init.repeat(min(chunk, n - i), 1, 1, 1).requires_grad_(True)
              for i in range(0, n, chunk)]  # fmt: skip
        ts = [targets[i : i + chunk].float() for i in range(0, n, chunk)]
        norms = [t.flatten(1).pow(2).sum(1).clamp_min(1e-8) for t in ts]
        opt = torch.optim.Adam(zs, lr=self.params["lr"])
        head.eval()
        clock = self.clock()
        loss_value = float("nan")
        with progress(transient=True, disable=not self.params["show_progress"]) as bar:
            task = bar.add_task(f"whitebox {label}", total=clock.steps, info="")
            while not clock.done:
                for group in opt.param_groups:
                    group["lr"] = cosine_lr(self.params["lr"], clock.fraction)
                total = 0.0
                for z, t, norm in zip(zs, ts, norms, strict=True):
                    x = torch.sigmoid(z)
                    match = (head(x) - t).flatten(1).pow(2).sum(1) / norm
                    loss = (match + self.params["tv_weight"] * total_variation(x)).sum() / n
                    (z.grad,) = torch.autograd.grad(loss, [z])
                    total += loss.item()
                opt.step()
                clock.tick()
                loss_value = total
                bar.update(task, completed=clock.step, info=f"loss {loss_value:.4f}")
        with torch.no_grad():
            x = torch.cat([torch.sigmoid(z) for z in zs])
        return x, {"steps": clock.step, **clock.limits(), "final_loss": loss_value}

    def evaluate(self, fs: FeatureSet) -> AttackResult:
        self._require_fitted()
        start = time.perf_counter()
        n = fs.victim_inputs.shape[0]
        k = n if self.params["victims"] is None else min(n, int(self.params["victims"]))
        recon, info = self.invert(fs.head, fs.victim_features[:k], fs.cut.name)
        scored = score_reconstruction(fs, recon, fs.victim_inputs[:k])
        config = {**self.base_config(fs), **scored.config, "inversion": info, "init": "aux mean"}
        return AttackResult(
            attack=self.name,
            threat_model=self.threat_model,
            cut=fs.cut.name,
            metrics=scored.metrics,
            baselines=scored.baselines,
            config=config,
            seconds=time.perf_counter() - start,
            samples=scored.samples,
            per_feature=scored.per_feature,
            sample_inputs=scored.sample_inputs,
        )
