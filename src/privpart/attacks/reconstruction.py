"""Shared loop of the black-box reconstruction attacks (decoder, c-GAN): learn features -> input
on (aux input, head(aux input)) pairs, pick the best snapshot on an aux validation slice, then
invert the victims' features in one forward pass.

Subclasses only say how one training step works (`train_step`); budgets, the cosine schedule
over the budget, validation, seeding and scoring live here once.
"""

from __future__ import annotations

import copy
import time
from abc import abstractmethod
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from privpart.attacks.base import Attack, AttackResult, FeatureSet, cosine_lr
from privpart.attacks.generator import FeatureGenerator, Standardize
from privpart.attacks.scoring import score_reconstruction
from privpart.metrics import ssim
from privpart.ui import progress


class ReconstructionAttack(Attack):
    """Black-box query attack: a generator trained on aux pairs, scored on victims."""

    threat_model: ClassVar[str] = "black-box query"
    defaults: ClassVar[dict[str, Any]] = {
        "batch_size": 16,  # under a time budget, more small steps beat fewer large ones
        "lr": 2e-3,
        "val_fraction": 0.1,
        "val_every": 50,  # steps between validation checks (and one at the end)
        "base_width": 32,
        "max_width": 128,
        "show_progress": False,
    }

    def __init__(self, budget=None, seed: int = 0, **params: Any) -> None:  # noqa: ANN001
        super().__init__(budget, seed, **params)
        self.generator: FeatureGenerator | None = None
        self.norm: Standardize | None = None
        self.fit_info: dict[str, Any] = {}

    # -- what subclasses provide -------------------------------------------------------------
    def setup(self, fs: FeatureSet) -> None:
        """Build extra networks/optimisers (the discriminator) before training."""

    @abstractmethod
    def train_step(self, features: Tensor, images: Tensor, lr: float) -> dict[str, float]:
        """One optimisation step on a batch of standardised features and their inputs."""

    # -- the shared loop ---------------------------------------------------------------------
    def fit(self, fs: FeatureSet) -> None:
        start = time.perf_counter()
        torch.manual_seed(self.seed)
        g = torch.Generator().manual_seed(self.seed)
        train_idx, val_idx = fs.aux_split(self.params["val_fraction"], self.seed)
        self.norm = Standardize.fit(fs.aux_features[train_idx])
        self.generator = FeatureGenerator(
            fs.feature_shape, fs.input_shape, self.params["base_width"], self.params["max_width"]
        )
        self.g_opt = torch.optim.Adam(
            self.generator.parameters(), lr=self.params["lr"], betas=(0.5, 0.999)
        )
        self.setup(fs)
        feats, images = fs.aux_features, fs.aux_inputs
        clock = self.clock()
        bs = min(self.params["batch_size"], train_idx.numel())
        best = (-float("inf"), 0, copy.deepcopy(self.generator.state_dict()))
        order, pos, losses = train_idx[torch.randperm(train_idx.numel(), generator=g)], 0, {}
        with progress(transient=True, disable=not self.params["show_progress"]) as bar:
            task = bar.add_task(f"{self.name} @ {fs.cut.name}", total=clock.steps, info="")
            while not clock.done:
                if pos + bs > order.numel():
                    order, pos = train_idx[torch.randperm(train_idx.numel(), generator=g)], 0
                idx = order[pos : pos + bs]
                pos += bs
                self.generator.train()
                losses = self.train_step(
                    self.norm(feats[idx]), images[idx], cosine_lr(self.params["lr"], clock.fraction)
                )
                clock.tick()
                if clock.step % self.params["val_every"] == 0 or clock.done:
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
        """Features (as the head outputs them) -> reconstructed inputs."""
        self._require_fitted()
        assert self.generator is not None and self.norm is not None
        self.generator.eval()
        outs = [self.generator(self.norm(features[i : i + batch]))
                for i in range(0, features.shape[0], batch)]  # fmt: skip
        return torch.cat(outs)

    def _validate(self, features: Tensor, images: Tensor) -> float:
        """Aux-validation SSIM (falls back to -L1 where SSIM is undefined): picks the snapshot."""
        recon = self.reconstruct_unchecked(features)
        value = ssim(recon, images)
        return value if value == value else -float(F.l1_loss(recon, images))

    @torch.no_grad()
    def reconstruct_unchecked(self, features: Tensor) -> Tensor:
        assert self.generator is not None and self.norm is not None
        self.generator.eval()
        return self.generator(self.norm(features))

    def evaluate(self, fs: FeatureSet) -> AttackResult:
        self._require_fitted()
        start = time.perf_counter()
        recon = self.reconstruct(fs.victim_features)
        scored = score_reconstruction(fs, recon, fs.victim_inputs)
        config = {**self.base_config(fs), **scored.config, "fit": self.fit_info}
        return AttackResult(
            attack=self.name,
            threat_model=self.threat_model,
            cut=fs.cut.name,
            metrics=scored.metrics,
            baselines=scored.baselines,
            config=config,
            seconds=self.fit_info["fit_seconds"] + time.perf_counter() - start,
            samples=scored.samples,
            per_feature=scored.per_feature,
            sample_inputs=scored.sample_inputs,
        )
