"""White-box inversion through a learned image prior (GLASS / GLASS++, NeurIPS 2023): search
the latent space of a generative model trained on the attacker's aux images, then optionally
refine in pixel space from there.

    z* = argmin_z  ||head(G(z)) - f||^2 / ||f||^2  +  z_weight * mean(z^2)
    x* = argmin_{x in [0,1]^d, from G(z*)}  ||head(x) - f||^2 / ||f||^2  +  tv * TV(x)

Pixel-space inversion finds *an* input with the right features; where the cut discards
information (deep cuts, defended heads) most such inputs are not images. Searching G's latent
space keeps the search on the manifold of images like the aux set. The second stage can recover
detail the small generator cannot draw, at the risk of leaving the manifold again: whether to
refine, and with which TV weight, is chosen on aux images (the attacker inverts some of its own
aux images' features and scores each option against the known inputs), never on victims.

Starting latents: the encodings of each target's nearest aux images in feature space, the
prior mean (0), random draws; restarts race and the lowest objective wins (`inversion.invert`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from privpart.attacks.inversion import (
    PIXELS,
    Inversion,
    Phases,
    Space,
    feature_norms,
    invert,
    module_device,
)
from privpart.attacks.vae import VAE
from privpart.metrics import ssim

NO_REFINE = None  # the refinement candidate "keep the generator's image"


@dataclass(frozen=True)
class LatentSettings:
    z_lr: float = 0.05
    z_weight: float = 1e-3
    restarts: int = 3
    warmup: float = 0.15
    refine: tuple[float | None, ...] = (NO_REFINE, 0.0, 1e-2, 5e-2)  # pixel-stage TV candidates
    refine_lr: float = 0.05
    tune_images: int = 4
    chunk: int = 128


def latent_space(vae: VAE, z_weight: float) -> Space:
    return Space(render=vae.decode, penalty=lambda z: z_weight * z.pow(2).mean(1), box=False)


def latent_starts(
    vae: VAE, targets: Tensor, pool_inputs: Tensor, pool_features: Tensor, restarts: int,
    seed: int = 0,
) -> Tensor:  # fmt: skip
    """(restarts, n, latent): encodings of the 1st/2nd nearest pool images (feature space), the
    prior mean, then random draws."""
    n = targets.shape[0]
    device = targets.device
    t = targets.flatten(1).float()
    p = pool_features.to(device).flatten(1).float()
    d = torch.cdist(t, p).pow(2) / feature_norms(targets).unsqueeze(1)
    k = min(2, p.shape[0])
    nearest = d.topk(k, dim=1, largest=False).indices
    with torch.no_grad():
        encoded = [vae.encode(pool_inputs.to(device)[nearest[:, j]])[0] for j in range(k)]
    g = torch.Generator().manual_seed(seed)
    order = [encoded[0], torch.zeros_like(encoded[0]), *encoded[1:]]
    while len(order) < restarts:
        order.append(torch.randn(n, vae.latent, generator=g).to(device))
    return torch.stack(order[:restarts])


@dataclass
class LatentResult:
    images: Tensor
    latent: Inversion
    refined: Inversion | None
    choice: float | None  # the refinement TV weight chosen on aux (None: no refinement)
    scores: dict[str, float]  # aux SSIM per refinement candidate
    seconds: float

    def info(self) -> dict:
        return {"latent": self.latent.summary(), "refine_tv": self.choice,
                "refine_scores": self.scores,
                "refined": None if self.refined is None else self.refined.summary(),
                "seconds": self.seconds}  # fmt: skip


def _label(tv: float | None) -> str:
    return "none" if tv is None else f"tv={tv:g}"


def reconstruct_latent(
    head: nn.Module,
    vae: VAE,
    aux_inputs: Tensor,
    aux_features: Tensor,
    targets: Tensor,
    seconds: float | None,
    steps: int,
    settings: LatentSettings = LatentSettings(),
    seed: int = 0,
    on_phase: Callable[[str], None] | None = None,
) -> LatentResult:
    """Latent search (targets and a few aux tuning images together), then the refinement that
    scores best on the tuning images, applied to the targets. Runs on the head's device."""
    started = time.perf_counter()
    device = module_device(head)
    targets = targets.to(device).float()
    n, R = targets.shape[0], settings.restarts
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(aux_inputs.shape[0], generator=g)
    k = min(settings.tune_images, max(0, aux_inputs.shape[0] - 1))
    tune_idx, pool_idx = perm[:k], perm[k:]
    pool_x, pool_f = aux_inputs[pool_idx].to(device), aux_features[pool_idx].to(device)
    tune_x = aux_inputs[tune_idx].to(device).float()
    refine = [c for c in settings.refine if c is not NO_REFINE]
    choose = k > 0 and len(settings.refine) > 1
    per = 1 + (R - 1) * settings.warmup
    shares = [(n + k) * per]
    if choose:
        shares.append(len(refine) * k)
    if refine:
        shares.append(n)
    phases = Phases(seconds, steps, tuple(shares))
    both = torch.cat([targets, aux_features[tune_idx].to(device).float()])
    space = latent_space(vae, settings.z_weight)
    if on_phase:
        on_phase("latent")
    starts = latent_starts(vae, both, pool_x, pool_f, R, seed)
    lat = invert(head, both, starts, phases.next(), 0.0, settings.z_lr, settings.warmup,
                 settings.chunk, space=space)  # fmt: skip
    base_t, base_k = lat.images[:n], lat.images[n:]
    scores: dict[str, float] = {}
    choice: float | None = settings.refine[0] if settings.refine else NO_REFINE
    if choose:
        if on_phase:
            on_phase("tune")
        scores[_label(NO_REFINE)] = (
            ssim(base_k.cpu(), tune_x.cpu()) if NO_REFINE in settings.refine else -float("inf")
        )
        G = len(refine)
        tv = torch.tensor(refine, device=device).repeat_interleave(k)
        tf = aux_features[tune_idx].to(device).float().repeat(G, *([1] * (targets.dim() - 1)))
        run = invert(head, tf, base_k.repeat(G, 1, 1, 1).unsqueeze(0), phases.next(), tv,
                     settings.refine_lr, 0.0, settings.chunk, space=PIXELS)  # fmt: skip
        for j, w in enumerate(refine):
            scores[_label(w)] = ssim(run.images[j * k : (j + 1) * k].cpu(), tune_x.cpu())
        options = list(settings.refine)
        choice = max(options, key=lambda w: (scores[_label(w)], w is NO_REFINE))
    refined = None
    images = base_t
    if choice is not NO_REFINE:
        if on_phase:
            on_phase("refine")
        refined = invert(head, targets, base_t.unsqueeze(0), phases.next(), float(choice),
                         settings.refine_lr, 0.0, settings.chunk, space=PIXELS)  # fmt: skip
        images = refined.images
    lat.images, lat.distance, lat.objective = base_t, lat.distance[:n], lat.objective[:n]
    lat.restart = lat.restart[:n]
    return LatentResult(images, lat, refined, choice, scores, time.perf_counter() - started)
