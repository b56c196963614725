"""Train an inverse network (features -> image) on the attacker's own images, whatever produces
their features: the head through queries (black-box), or a substitute head the attacker built
(no head access). Shared by the attacks that need one and get their features differently.

Each step featurises a fresh, augmented batch (random flips and 1-px shifts: the attacker can
feed any image it likes to whatever it featurises with), so the inverse sees many more pairs
than the aux set holds; for a noisy head every query also draws fresh noise, which makes the
inverse a denoiser (it learns E[x | noisy features]). The snapshot with the best SSIM on a
held-out aux slice is kept.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from privpart.attacks.base import Clock, cosine_lr
from privpart.attacks.generator import FeatureGenerator, Standardize
from privpart.metrics import ssim

Featurize = Callable[[Tensor], Tensor]
STATS_SAMPLES = 512  # aux images whose features fix the standardisation


def augment(x: Tensor, g: torch.Generator) -> Tensor:
    """Random horizontal flips and 1-px shifts of a batch (the attacker's own images)."""
    flip = (torch.rand(x.shape[0], generator=g) < 0.5).to(x.device).view(-1, 1, 1, 1)
    x = torch.where(flip, x.flip(3), x)
    dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=g))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


@dataclass
class InverseNet:
    generator: FeatureGenerator
    norm: Standardize  # fitted on the training features (what the generator was trained on)
    steps: int
    seconds: float
    val_ssim: float
    best_step: int

    @torch.no_grad()
    def __call__(self, features: Tensor, align: bool = False, batch: int = 256) -> Tensor:
        """Reconstructions of `features`. `align`: standardise them with their own statistics
        instead of the training features' (absorbs a scale/offset mismatch between the
        features trained on and those attacked, e.g. substitute vs real head)."""
        self.generator.eval()
        device = next(self.generator.parameters()).device
        f = features.to(device).float()
        norm = Standardize.fit(f).to(device) if align else self.norm
        return torch.cat([self.generator(norm(f[i : i + batch]))
                          for i in range(0, f.shape[0], batch)])  # fmt: skip

    def info(self) -> dict:
        return {"steps": self.steps, "seconds": self.seconds, "val_ssim": self.val_ssim,
                "best_step": self.best_step}  # fmt: skip


def train_inverse(
    featurize: Featurize,
    images: Tensor,
    feature_shape: tuple[int, ...],
    clock: Clock,
    device: torch.device | str,
    lr: float = 2e-3,
    batch_size: int = 16,
    val_fraction: float = 0.1,
    val_every: int = 50,
    augment_images: bool = True,
    base_width: int = 32,
    max_width: int = 128,
    seed: int = 0,
) -> InverseNet:
    """Fit a `FeatureGenerator` with an L1 pixel loss on (x, featurize(x)) for x drawn from
    `images` (augmented when `augment_images`)."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    aux = images.to(device).float()
    n = aux.shape[0]
    n_val = min(max(1, round(n * val_fraction)), n - 1) if n > 1 else 0
    perm = torch.randperm(n, generator=g)
    train, val = aux[perm[n_val:]], aux[perm[:n_val]]
    with torch.no_grad():  # standardisation statistics from a sample (queries cost compute)
        norm = Standardize.fit(featurize(train[:STATS_SAMPLES]).float()).to(device)
        val_f = norm(featurize(val).float()) if n_val else None
    gen = FeatureGenerator(feature_shape, tuple(aux.shape[1:]), base_width, max_width).to(device)
    opt = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))
    bs = min(batch_size, train.shape[0])
    best = (-float("inf"), 0, copy.deepcopy(gen.state_dict()))
    while not clock.done:
        idx = torch.randint(0, train.shape[0], (bs,), generator=g).to(device)
        x = augment(train[idx], g) if augment_images else train[idx]
        with torch.no_grad():
            f = norm(featurize(x).float())
        for group in opt.param_groups:
            group["lr"] = cosine_lr(lr, clock.fraction)
        gen.train()
        loss = F.l1_loss(gen(f), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        clock.tick()
        if val_f is not None and (clock.step % val_every == 0 or clock.done):
            gen.eval()
            with torch.no_grad():
                out = gen(val_f)
            score = ssim(out.cpu(), val.cpu())
            score = score if score == score else -float(F.l1_loss(out, val))
            if score > best[0]:
                best = (score, clock.step, copy.deepcopy(gen.state_dict()))
    gen.load_state_dict(best[2])
    gen.eval()
    return InverseNet(gen, norm, clock.step, time.perf_counter() - started, best[0], best[1])
