"""`prior` and `prior-decoder`: reconstruction through a learned image prior (GLASS/GLASS++,
NeurIPS 2023), a small VAE trained on the attacker's aux images (`vae.py`).

- `prior` (white-box): latent-space inversion against the head, then a pixel refinement if
  aux images say it helps (`latent.py`). Stays on the image manifold where pixel-space
  inversion wanders off it (deep cuts, defended heads).
- `prior-decoder` (black-box query): the decoder's answer projected onto the prior. A decoder
  trained on fresh queries of augmented aux images (`inverse_net.py`) guesses x_D = D(f); the
  latent z* = argmin ||G(z) - x_D||^2 + z_weight * |z|^2 is searched from the encoding of x_D.
  Each victim then keeps whichever of x_D, G(z*) and their average the head itself says fits
  best: the attacker queries the head on its own candidates and compares their features with
  the intercepted ones (queries of its own inputs are what black-box query grants).

The VAE is the same for every cut of a model (it sees aux images only), so it is trained once
per process and reused (keyed by the aux images, the VAE settings, its budget and the seed);
`info["vae"]["spent_seconds"]` is 0 when. Budget: `vae_share` of the time (and `vae_steps` steps)
for the VAE, the rest for the search; with a step budget of N steps, each search phase runs N
steps and the VAE `vae_steps` x N / `default_steps`.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import asdict
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from privpart.attacks.base import Attack, AttackOutput, Clock, cosine_lr
from privpart.attacks.inverse_net import train_inverse
from privpart.attacks.inversion import VICTIMS, feature_norms
from privpart.attacks.latent import LatentSettings, reconstruct_latent
from privpart.attacks.registry import ATTACKS
from privpart.attacks.threat import ThreatModel
from privpart.attacks.vae import VAE, VAEFit, train_vae
from privpart.attacks.view import AttackerView
from privpart.attacks.whitebox import attack_copy, weight_list
from privpart.params import Param

_VAES: OrderedDict[str, tuple[VAE, VAEFit]] = OrderedDict()
_KEEP = 2  # VAEs kept per process (one model's aux set, and a spare)

VAE_PARAMS: dict[str, Param] = {
    "vae_share": Param(0.4, "share of the time budget spent training the VAE", float, 0.0, True,
                       maximum=0.9),
    "vae_steps": Param(1500, "VAE training steps (cap; exact with a step budget)", int, 1),
    "latent": Param(64, "VAE latent dimensions", int, 2),
    "vae_width": Param(32, "VAE channels at full resolution", int, 4),
    "vae_beta": Param(0.5, "KL weight of the VAE", float, 0.0),
    "z_weight": Param(1e-3, "latent prior weight in the search", float, 0.0),
}  # fmt: skip


def _vae_key(aux: Tensor, values: dict[str, Any], seconds: float | None, steps: int, seed: int,
             device: torch.device) -> str:  # fmt: skip
    h = hashlib.sha256(aux.detach().float().cpu().contiguous().numpy().tobytes())
    parts = [h.hexdigest(), str(tuple(aux.shape)), str(seconds), str(steps), str(seed),
             str(device)] + [f"{k}={values[k]}" for k in sorted(VAE_PARAMS)]  # fmt: skip
    return "|".join(parts)


def shared_vae(view: AttackerView, values: dict[str, Any], clock: Clock, seed: int
               ) -> tuple[VAE, dict]:  # fmt: skip
    """The VAE for this aux set: trained within `clock`, or the one trained earlier with the
    same data, settings and budget."""
    key = _vae_key(view.aux_inputs, values, clock.seconds, clock.steps, seed, view.device)
    if key in _VAES:
        _VAES.move_to_end(key)
        vae, fit = _VAES[key]
        return vae, {**asdict(fit), "spent_seconds": 0.0}  # trained by an earlier attack
    vae, fit = train_vae(
        view.aux_inputs, clock, view.device, latent=values["latent"], width=values["vae_width"],
        beta=values["vae_beta"], seed=seed, augment=view.kind == "image",
    )  # fmt: skip
    _VAES[key] = (vae, fit)
    while len(_VAES) > _KEEP:
        _VAES.popitem(last=False)
    return vae, {**asdict(fit), "spent_seconds": fit.seconds}


def vae_clock(values: dict[str, Any], clock: Clock, default_seconds: float,
              default_steps: int) -> Clock:  # fmt: skip
    """The VAE's share of the attack's budget. Time: `vae_share` of it, capped at `vae_steps`
    scaled like the budget. Steps: `vae_steps` scaled by the budget's steps over the attack's
    default step cap (a 3-step smoke test trains a 22-step VAE, not a 1500-step one)."""
    if clock.seconds is None:
        return Clock(None, max(1, round(values["vae_steps"] * clock.steps / default_steps)))
    scale = clock.seconds / default_seconds
    cap = max(1, round(values["vae_steps"] * max(scale, 1e-9)))
    return Clock(clock.seconds * values["vae_share"], cap)


@ATTACKS.register("prior")
class PriorAttack(Attack):
    """White-box latent inversion through a VAE prior, then an aux-chosen pixel refinement."""

    name: ClassVar[str] = "prior"
    threat_model: ClassVar[ThreatModel] = ThreatModel.WHITE_BOX
    adaptive_to: ClassVar[tuple[str, ...]] = ("noise", "bottleneck", "adversarial", "nopeek")
    default_seconds: ClassVar[float] = 60.0
    default_steps: ClassVar[int] = 200
    params: ClassVar[dict[str, Param]] = {
        **VAE_PARAMS,
        "victims": VICTIMS,
        "z_lr": Param(0.05, "Adam learning rate on the latents", float, 0.0, True),
        "restarts": Param(3, "starting latents per victim", int, 1),
        "refine": Param("none,0,0.01,0.05", "pixel refinement TV weights tried on aux "
                        "('none' = keep the generator's image)", str),
        "refine_lr": Param(0.05, "Adam learning rate of the pixel refinement", float, 0.0, True),
        "tune_images": Param(4, "aux images that choose the refinement", int, 1),
        "chunk": Param(128, "images per forward/backward pass (memory)", int, 1),
    }  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings()  # a malformed `refine` list fails here, before any work

    def settings(self) -> LatentSettings:
        v = self.values
        refine = weight_list(self.name, "refine", v["refine"], allow_none=True)
        return LatentSettings(z_lr=v["z_lr"], z_weight=v["z_weight"], restarts=v["restarts"],
                              refine=refine, refine_lr=v["refine_lr"],
                              tune_images=v["tune_images"], chunk=v["chunk"])  # fmt: skip

    def fit(self, view: AttackerView) -> None:
        """The prior (aux images only) and a private copy of the head."""
        clock = self.clock()
        self.budget_clock = clock
        self.vae, self.vae_info = shared_vae(
            view,
            self.values,
            vae_clock(self.values, clock, self.default_seconds, self.default_steps),
            self.seed,
        )
        self.head, self.noise_off = attack_copy(view.head, view.device)
        self.fitted = True

    def run(self, view: AttackerView) -> AttackOutput:
        self._require_fitted()
        n = view.intercepted.shape[0]
        k = n if self.values["victims"] is None else min(n, int(self.values["victims"]))
        clock = self.budget_clock
        seconds = None
        if clock.seconds is not None:
            seconds = max(1e-3, clock.seconds * (1 - self.values["vae_share"]))
        result = reconstruct_latent(
            self.head, self.vae, view.aux_inputs, view.aux_features, view.intercepted[:k],
            seconds, clock.steps, self.settings(), self.seed,
        )  # fmt: skip
        return AttackOutput(reconstructions=result.images.cpu(),
                            info={**result.info(), "vae": self.vae_info,
                                  "noise_switched_off": self.noise_off})  # fmt: skip


@ATTACKS.register("prior-decoder")
class PriorDecoderAttack(Attack):
    """Black-box: a decoder's guess projected onto the VAE prior, candidates judged by queries."""

    name: ClassVar[str] = "prior-decoder"
    threat_model: ClassVar[ThreatModel] = ThreatModel.BLACK_BOX_QUERY
    adaptive_to: ClassVar[tuple[str, ...]] = ("noise", "bottleneck")
    default_seconds: ClassVar[float] = 60.0
    default_steps: ClassVar[int] = 3000
    params: ClassVar[dict[str, Param]] = {
        **VAE_PARAMS,
        "decoder_share": Param(0.5, "share of the time budget for the decoder", float, 0.0,
                               True, maximum=0.9),
        "decoder_lr": Param(2e-3, "decoder learning rate", float, 0.0, True),
        "batch_size": Param(16, "images per decoder step", int, 1),
        "z_lr": Param(0.05, "Adam learning rate of the projection", float, 0.0, True),
        "projection_steps": Param(300, "latent projection steps", int, 1),
    }  # fmt: skip

    def fit(self, view: AttackerView) -> None:
        self.started = time.perf_counter()
        clock = self.clock()
        self.budget_clock = clock
        v = self.values
        vclock = vae_clock(v, clock, self.default_seconds, self.default_steps)
        self.vae, self.vae_info = shared_vae(view, v, vclock, self.seed)
        dec_clock = Clock(None if clock.seconds is None else clock.seconds * v["decoder_share"],
                          clock.steps)  # fmt: skip
        self.decoder = train_inverse(
            view.query, view.aux_inputs, view.feature_shape, dec_clock, view.device,
            lr=v["decoder_lr"], batch_size=v["batch_size"], augment_images=view.kind == "image",
            seed=self.seed,
        )  # fmt: skip
        self.fitted = True

    def run(self, view: AttackerView) -> AttackOutput:
        self._require_fitted()
        v = self.values
        started = time.perf_counter()
        guess = self.decoder(view.intercepted)
        seconds = self.budget_clock.seconds
        if seconds is not None:  # what the VAE and the decoder left of the budget
            seconds = max(1e-3, seconds - (started - self.started))
        projected, steps = project(self.vae, guess, Clock(seconds, v["projection_steps"]),
                                   v["z_lr"], v["z_weight"], self.seed)  # fmt: skip
        candidates = [guess, projected, 0.5 * (guess + projected)]
        names = ["decoder", "projection", "average"]
        target = view.intercepted.to(guess.device).float()
        norm = feature_norms(target)
        dist = torch.stack([
            torch.cat([(view.query(c[i : i + 256]).float() - target[i : i + 256])
                       .flatten(1).pow(2).sum(1) for i in range(0, c.shape[0], 256)]) / norm
            for c in candidates
        ])  # fmt: skip
        pick = dist.argmin(0)
        out = torch.stack(candidates)[pick, torch.arange(guess.shape[0])]
        counts = torch.bincount(pick.cpu(), minlength=len(names)).tolist()
        info = {"decoder": self.decoder.info(), "vae": self.vae_info,
                "projection_steps": steps, "picked": dict(zip(names, counts, strict=True)),
                "feature_distance_median": float(dist.min(0).values.median()),
                "run_seconds": time.perf_counter() - started}  # fmt: skip
        return AttackOutput(reconstructions=out.cpu(), info=info)


def project(vae: VAE, images: Tensor, clock: Clock, lr: float, z_weight: float, seed: int = 0
            ) -> tuple[Tensor, int]:  # fmt: skip
    """(G(z*), steps) with z* = argmin ||G(z) - images||^2 + z_weight * mean(z^2), from
    E(images), Adam with a cosine schedule over `clock`."""
    torch.manual_seed(seed)
    with torch.no_grad():
        z = vae.encode(images)[0].clone()
    z.requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    while not clock.done:
        for group in opt.param_groups:
            group["lr"] = cosine_lr(lr, clock.fraction)
        loss = (F.mse_loss(vae.decode(z), images, reduction="none").flatten(1).mean(1)
                + z_weight * z.pow(2).mean(1)).sum()  # fmt: skip
        (z.grad,) = torch.autograd.grad(loss, [z])
        opt.step()
        clock.tick()
    with torch.no_grad():
        return vae.decode(z), clock.step
