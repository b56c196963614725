"""Shared loop of the black-box reconstruction attacks (decoder, c-GAN): learn features -> input
on (aux input, head(aux input)) pairs, pick the best snapshot on an aux validation slice, then
invert the intercepted victim features in one forward pass.

Subclasses only say how one training step works (`train_step`); budgets, the cosine schedule
over the budget, validation and seeding live here once; scoring is the framework's.
"""

from __future__ import annotations

import copy
import time
from abc import abstractmethod
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from privpart.attacks.base import Attack, AttackOutput, Budget, cosine_lr
from privpart.attacks.generator import FeatureGenerator, Standardize
from privpart.attacks.threat import ThreatModel
from privpart.attacks.view import AttackerView
from privpart.metrics import ssim
from privpart.params import Param
from privpart.ui import progress

SHOW_PROGRESS = Param(False, "draw a progress bar while the attack runs", bool)


class ReconstructionAttack(Attack):
    """Black-box query attack: a generator trained on aux pairs, scored on victims."""

    threat_model: ClassVar[ThreatModel] = ThreatModel.BLACK_BOX_QUERY
    params: ClassVar[dict[str, Param]] = {
        "batch_size": Param(
            16, "samples per step (under a time budget, more small steps beat fewer large ones)",
            int, 1,
        ),
        "lr": Param(2e-3, "peak learning rate (cosine decay over the budget)", float, 0.0, True),
        "val_fraction": Param(
            0.1, "share of aux held out to pick the best snapshot", float, 0.0, True, maximum=0.5
        ),
        "val_every": Param(50, "steps between validation checks (and one at the end)", int, 1),
        "base_width": Param(32, "generator channels at full resolution", int, 1),
        "max_width": Param(128, "generator channels at low resolution", int, 1),
        "show_progress": SHOW_PROGRESS,
    }  # fmt: skip

    def __init__(self, budget: Budget | None = None, seed: int = 0, **params: Any) -> None:
        super().__init__(budget, seed, **params)
        self.device = torch.device("cpu")
        self.generator: FeatureGenerator | None = None
        self.norm: Standardize | None = None
        self.fit_info: dict[str, Any] = {}

    # -- what subclasses provide -------------------------------------------------------------
    def setup(self, view: AttackerView) -> None:
        """Build extra networks/optimisers (the discriminator) before training."""

    @abstractmethod
    def train_step(self, features: Tensor, images: Tensor, lr: float) -> dict[str, float]:
        """One optimisation step on a batch of standardised features and their inputs."""

    # -- the shared loop ---------------------------------------------------------------------
    def fit(self, view: AttackerView) -> None:
        start = time.perf_counter()
        torch.manual_seed(self.seed)
        g = torch.Generator().manual_seed(self.seed)
        v = self.values
        train_idx, val_idx = view.aux_split(v["val_fraction"], self.seed)
        self.device = view.device
        self.norm = Standardize.fit(view.aux_features[train_idx]).to(self.device)
        self.generator = FeatureGenerator(
            view.feature_shape, view.input_shape, v["base_width"], v["max_width"]
        ).to(self.device)
        self.g_opt = torch.optim.Adam(self.generator.parameters(), lr=v["lr"], betas=(0.5, 0.999))
        self.setup(view)
        feats, images = view.aux_features, view.aux_inputs
        clock = self.clock()
        bs = min(v["batch_size"], train_idx.numel())
        best = (-float("inf"), 0, copy.deepcopy(self.generator.state_dict()))
        order, pos, losses = train_idx[torch.randperm(train_idx.numel(), generator=g)], 0, {}
        with progress(transient=True, disable=not v["show_progress"]) as bar:
            task = bar.add_task(f"{self.name} @ {view.cut.name}", total=clock.steps, info="")
            while not clock.done:
                if pos + bs > order.numel():
                    order, pos = train_idx[torch.randperm(train_idx.numel(), generator=g)], 0
                idx = order[pos : pos + bs]
                pos += bs
                self.generator.train()
                losses = self.train_step(
                    self.norm(feats[idx].to(self.device)),
                    images[idx].to(self.device),
                    cosine_lr(v["lr"], clock.fraction),
                )
                clock.tick()
                if clock.step % v["val_every"] == 0 or clock.done:
                    score = self._validate(feats[val_idx], images[val_idx])
                    if score > best[0]:
                        best = (score, clock.step, copy.deepcopy(self.generator.state_dict()))
                bar.update(task, completed=clock.step, info=" ".join(
                    f"{k} {v:.3f}" for k, v in losses.items()))  # fmt: skip
        self.generator.load_state_dict(best[2])
        self.generator.eval()
        self.fit_info = {
            "steps": clock.step,
            **clock.limits(),
            "best_step": best[1],
            "val_ssim": best[0],
            "val_samples": int(val_idx.numel()),
            "train_samples": int(train_idx.numel()),
            "final_losses": losses,
            "fit_seconds": time.perf_counter() - start,
        }
        self.fitted = True

    @torch.no_grad()
    def reconstruct(self, features: Tensor, batch: int = 256) -> Tensor:
        """Features (as the head outputs them) -> reconstructed inputs, on the CPU."""
        assert self.generator is not None and self.norm is not None
        self.generator.eval()
        outs = [self.generator(self.norm(features[i : i + batch].to(self.device))).cpu()
                for i in range(0, features.shape[0], batch)]  # fmt: skip
        return torch.cat(outs)

    def _validate(self, features: Tensor, images: Tensor) -> float:
        """Aux-validation SSIM (falls back to -L1 where SSIM is undefined): picks the snapshot."""
        recon = self.reconstruct(features)
        value = ssim(recon, images)
        return value if value == value else -float(F.l1_loss(recon, images))

    def run(self, view: AttackerView) -> AttackOutput:
        self._require_fitted()
        return AttackOutput(reconstructions=self.reconstruct(view.intercepted),
                            info={"fit": self.fit_info})  # fmt: skip
