"""`whitebox`: regularised maximum-likelihood inversion with the head's weights (white-box;
He et al., ACSAC 2019). It reaches exact inversion where the head is invertible: on the
quickstart VGG-16 at `features.9` it reconstructs the victims at SSIM > 0.999.

For each victim, projected Adam in pixel space (a step, then a clamp to [0, 1]) minimises
    ||head(x) - f||^2 / ||f||^2  +  tv * TV(x)
from several starting points (the aux image nearest in feature space, the aux mean); after a
warm-up each victim keeps the start with the lowest objective. The algorithm is in
`inversion.py`; this file adapts it to the attack contract:

- `fit` (aux data and the head only) chooses the TV weight: it inverts the features of a few
  of the attacker's own aux images under each candidate weight, with the same restarts and the
  same step count as the real run, and keeps the weight whose reconstructions match those
  known images best (SSIM). Where the head is invertible that is 0 (exact inversion needs no
  prior); where the cut discards information it is the prior the cut needs.
- `run` inverts the first `victims` intercepted feature maps with that weight.

Budget: `steps` is the step count of each phase (tuning mimics the real run); a time budget is
shared between the phases in proportion to their batches (the tuning batch is
tv candidates x `tune_images` images, the real one `victims`). The default (60 s, cap 200 steps)
buys ~150 steps at `features.9` of the quickstart VGG-16 on 2 idle CPU cores; each step costs
one forward + backward pass of the head per image, so deeper cuts get fewer steps in the same
time (`docs/attacks.md` has the budget curve).

Knowing the defence: the attacker holds the head's weights, so it knows a `noise` defence's
noise module too. It inverts a copy of the head with the noise switched off (a deterministic
objective; the noise only adds variance to every gradient) against the noisy features it
intercepted, and the TV weight is chosen on aux features drawn through the same noisy head, so
the prior is set for the noise level actually deployed. Defences that change the weights
(adversarial, nopeek) are attacked on the defended weights as they are.
"""

from __future__ import annotations

import copy
import time
from typing import Any, ClassVar

import torch
from torch import nn

from privpart.attacks.base import Attack, AttackOutput
from privpart.attacks.inversion import (
    DEFAULT_TV_WEIGHTS,
    VICTIMS,
    InversionSettings,
    Phases,
    choose_tv,
    invert,
    starting_points,
)
from privpart.attacks.reconstruction import SHOW_PROGRESS
from privpart.attacks.registry import ATTACKS
from privpart.attacks.threat import ThreatModel
from privpart.attacks.view import AttackerView
from privpart.errors import PrivpartError
from privpart.params import Param

NOISE_SIGMA = "noise.sigma"  # buffer name suffix of a `noise` defence's CutNoise (wrappers.py)


def attack_copy(head: nn.Module, device: torch.device) -> tuple[nn.Module, bool]:
    """A private copy of the head for input-gradient work: frozen weights, channels-last for
    4-D convolutions (~25 % faster on CPUs), any defence noise switched off. Returns
    (copy, whether noise was switched off). The shared head is left untouched."""
    head = copy.deepcopy(head).to(device).eval().requires_grad_(False)
    silenced = False
    for name, buf in head.named_buffers():
        if name.endswith(NOISE_SIGMA) and float(buf) != 0.0:
            buf.fill_(0.0)
            silenced = True
    if any(isinstance(m, nn.Conv2d) for m in head.modules()):
        head = head.to(memory_format=torch.channels_last)
    return head, silenced


def weight_list(owner: str, name: str, text: str, allow_none: bool = False
                ) -> tuple[float | None, ...]:  # fmt: skip
    """'0,0.01,none' -> (0.0, 0.01, None): a declared comma-separated list of weights >= 0."""
    out: list[float | None] = []
    for item in (v.strip() for v in text.split(",")):
        if not item:
            continue
        if allow_none and item == "none":
            out.append(None)
            continue
        try:
            value = float(item)
        except ValueError:
            value = -1.0
        if not value >= 0 or value == float("inf"):
            raise PrivpartError(
                f"attack {owner!r}: {name} holds {item!r}, not a weight >= 0",
                f"give --{name.replace('_', '-')} as comma-separated numbers >= 0, e.g. 0,0.01"
                + (" (or none)" if allow_none else ""),
            )
        out.append(value)
    if not out:
        raise PrivpartError(
            f"attack {owner!r}: {name} is empty",
            f"give --{name.replace('_', '-')} at least one weight, e.g. 0",
        )
    return tuple(out)


@ATTACKS.register("whitebox")
class WhiteBoxAttack(Attack):
    name: ClassVar[str] = "whitebox"
    threat_model: ClassVar[ThreatModel] = ThreatModel.WHITE_BOX
    adaptive_to: ClassVar[tuple[str, ...]] = ("noise", "bottleneck", "adversarial", "nopeek")
    default_seconds: ClassVar[float] = 60.0
    default_steps: ClassVar[int] = 200
    params: ClassVar[dict[str, Param]] = {
        "victims": VICTIMS,
        "chunk": Param(128, "images per forward/backward pass (memory)", int, 1),
        "lr": Param(0.1, "Adam learning rate on the pixels (cosine decay)", float, 0.0,
                    exclusive=True),
        "restarts": Param(2, "starting points per victim (nearest aux image, aux mean, ...)",
                          int, 1),
        "warmup": Param(0.1, "share of the budget all restarts run before each victim keeps "
                        "its best", float, 0.0, maximum=1.0),
        "tv_weight": Param(None, "TV prior weight; none = chosen on aux images among "
                           "tv_candidates", float, 0.0, optional=True),
        "tv_candidates": Param(",".join(f"{w:g}" for w in DEFAULT_TV_WEIGHTS),
                               "comma-separated TV weights tried on aux images", str),
        "tune_images": Param(4, "aux images inverted per TV candidate to choose it", int, 1),
        "show_progress": SHOW_PROGRESS,
    }  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings()  # a malformed candidate list fails here, before any work

    def settings(self) -> InversionSettings:
        v = self.values
        return InversionSettings(lr=v["lr"], restarts=v["restarts"], warmup=v["warmup"],
                                 tv_weights=weight_list(self.name, "tv_candidates",
                                                        v["tv_candidates"]),
                                 tune_images=v["tune_images"], chunk=v["chunk"])  # fmt: skip

    def victims(self, view: AttackerView) -> int:
        n = view.intercepted.shape[0]
        return n if self.values["victims"] is None else min(n, int(self.values["victims"]))

    def fit(self, view: AttackerView) -> None:
        """Choose the TV weight on aux images (the head and aux data only)."""
        started = time.perf_counter()
        s = self.settings()
        self.head, self.noise_off = attack_copy(view.head, view.device)
        g = torch.Generator().manual_seed(self.seed)
        perm = torch.randperm(view.aux_inputs.shape[0], generator=g)
        k = min(s.tune_images, view.aux_inputs.shape[0] - 1)
        tune, pool = perm[:k], perm[k:]
        self.pool_x = view.aux_inputs[pool].to(view.device)
        self.pool_f = view.aux_features[pool].to(view.device)
        fixed = self.values["tv_weight"]
        per = 1 + (s.restarts - 1) * s.warmup
        cands = () if fixed is not None or k < 1 else s.tv_weights
        shares = ((len(cands) * k * per,) if len(cands) > 1 else ()) + (self.victims(view) * per,)
        clock = self.clock()
        self.phases = Phases(clock.seconds, clock.steps, shares)
        self.tv, self.tv_info = (fixed if fixed is not None else (cands[0] if cands else 0.0)), {}
        if len(cands) > 1:
            choice = choose_tv(self.head, view.aux_inputs[tune].to(view.device),
                               view.aux_features[tune].to(view.device), self.pool_x, self.pool_f,
                               cands, self.phases.next(), s.restarts, s.lr, s.warmup, self.seed,
                               s.chunk)  # fmt: skip
            self.tv = choice.weight
            self.tv_info = {"scores": {f"{w:g}": sc for w, sc in choice.scores.items()},
                            "images": choice.images, "steps": choice.steps,
                            "seconds": choice.seconds}  # fmt: skip
        self.fit_seconds = time.perf_counter() - started
        self.fitted = True

    def run(self, view: AttackerView) -> AttackOutput:
        self._require_fitted()
        s = self.settings()
        targets = view.intercepted[: self.victims(view)].to(view.device)
        starts = starting_points(targets, self.pool_x, self.pool_f, s.restarts, self.seed)
        clock = self.phases.next()
        result = invert(self.head, targets, starts, clock, self.tv, s.lr, s.warmup, s.chunk)
        info = {"inversion": {**result.summary(), **clock.limits()},
                "tv_weight": self.tv, "tv_choice": self.tv_info,
                "fit_seconds": self.fit_seconds,
                "starts": ["nearest aux (features)", "aux mean", "2nd nearest", "3rd nearest",
                           "noise"][: s.restarts],
                "noise_switched_off": self.noise_off}  # fmt: skip
        return AttackOutput(reconstructions=result.images.cpu(), info=info)
