"""`whitebox`: optimisation inversion with the head's weights (white-box).

For each victim, find x in [0, 1] (x = sigmoid(z)) minimising
    ||head(x) - f||^2 / ||f||^2  +  tv_weight * TV(x)
with Adam from the aux-mean image, batched over victims. The normalised feature loss makes one
TV weight work at every cut; the TV prior keeps the solution image-like where the head discards
information (pooling, ReLU).

Its work happens in `run` (it needs the intercepted features), so the budget governs the
inversion there; `fit` only reads the aux mean. Each step costs a forward and backward pass of
the head per victim, so by default it inverts the first 64 victims (`victims`), which buys 4x the
steps of inverting all 256 under the same clock. Gradients are taken w.r.t. the input only
(`torch.autograd.grad`): the head's weights are never touched.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from privpart.attacks.base import Attack, AttackOutput, cosine_lr
from privpart.attacks.reconstruction import SHOW_PROGRESS
from privpart.attacks.registry import ATTACKS
from privpart.attacks.threat import ThreatModel
from privpart.attacks.view import AttackerView
from privpart.params import Param
from privpart.ui import progress


def total_variation(x: Tensor) -> Tensor:
    """Per-image mean absolute difference of neighbouring pixels (anisotropic TV)."""
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().flatten(1).mean(1)
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


@ATTACKS.register("whitebox")
class WhiteBoxAttack(Attack):
    name: ClassVar[str] = "whitebox"
    threat_model: ClassVar[ThreatModel] = ThreatModel.WHITE_BOX
    default_seconds: ClassVar[float] = 30.0
    default_steps: ClassVar[int] = 1000
    params: ClassVar[dict[str, Param]] = {
        "victims": Param(64, "victims inverted and scored (the first ones); none = all", int, 1,
                         optional=True),
        "chunk": Param(64, "victims per forward/backward pass (memory)", int, 1),
        "lr": Param(0.1, "Adam learning rate on the logits", float, 0.0, exclusive=True),
        "tv_weight": Param(0.05, "weight of the total-variation prior", float, 0.0),
        "show_progress": SHOW_PROGRESS,
    }  # fmt: skip

    def fit(self, view: AttackerView) -> None:
        self.mean_image = view.aux_inputs.float().mean(0, keepdim=True).to(view.device)
        self.fitted = True

    def invert(
        self, head: torch.nn.Module, targets: Tensor, label: str = ""
    ) -> tuple[Tensor, dict]:
        """Inputs whose head features match `targets`, within the budget."""
        self._require_fitted()
        torch.manual_seed(self.seed)
        v = self.values
        n, chunk = targets.shape[0], max(1, int(v["chunk"]))
        init = torch.logit(self.mean_image.clamp(0.02, 0.98))
        zs = [init.repeat(min(chunk, n - i), 1, 1, 1).requires_grad_(True)
              for i in range(0, n, chunk)]  # fmt: skip
        ts = [targets[i : i + chunk].float().to(init.device) for i in range(0, n, chunk)]
        norms = [t.flatten(1).pow(2).sum(1).clamp_min(1e-8) for t in ts]
        opt = torch.optim.Adam(zs, lr=v["lr"])
        head.eval()
        clock = self.clock()
        loss_value = float("nan")
        with progress(transient=True, disable=not v["show_progress"]) as bar:
            task = bar.add_task(f"whitebox {label}", total=clock.steps, info="")
            while not clock.done:
                for group in opt.param_groups:
                    group["lr"] = cosine_lr(v["lr"], clock.fraction)
                total = 0.0
                for z, t, norm in zip(zs, ts, norms, strict=True):
                    x = torch.sigmoid(z)
                    match = (head(x) - t).flatten(1).pow(2).sum(1) / norm
                    loss = (match + v["tv_weight"] * total_variation(x)).sum() / n
                    (z.grad,) = torch.autograd.grad(loss, [z])
                    total += loss.item()
                opt.step()
                clock.tick()
                loss_value = total
                bar.update(task, completed=clock.step, info=f"loss {loss_value:.4f}")
        with torch.no_grad():
            x = torch.cat([torch.sigmoid(z) for z in zs]).cpu()
        return x, {"steps": clock.step, **clock.limits(), "final_loss": loss_value}

    def run(self, view: AttackerView) -> AttackOutput:
        self._require_fitted()
        n = view.intercepted.shape[0]
        k = n if self.values["victims"] is None else min(n, int(self.values["victims"]))
        recon, info = self.invert(view.head, view.intercepted[:k], view.cut.name)
        return AttackOutput(reconstructions=recon, info={"inversion": info, "init": "aux mean"})
