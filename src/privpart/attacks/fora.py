"""FORA-style reconstruction without head access: a substitute head matched to the intercepted
features in distribution (`substitute.py`), then an inverse network trained on the attacker's
own (image, substitute features) pairs (`inverse_net.py`) and applied to the intercepted
features.

The attacker's whole input is the arguments of `reconstruct_fora`: aux images and the
intercepted feature batch. There is no head and no query in reach, by construction.

The substitute's features are standardised with their own statistics and the intercepted ones
with theirs before the inverse sees them: a moment alignment that absorbs what the distribution
matching left of a per-channel scale or offset mismatch.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import Tensor

from privpart.attacks.base import Attack, AttackOutput, Clock
from privpart.attacks.inverse_net import InverseNet, train_inverse
from privpart.attacks.registry import ATTACKS
from privpart.attacks.substitute import SubstituteFit, train_substitute
from privpart.attacks.threat import ThreatModel
from privpart.attacks.view import AttackerView
from privpart.params import Param


@dataclass(frozen=True)
class ForaSettings:
    substitute_share: float = 0.5  # of the budget (time and steps) spent on the substitute
    width: int = 32
    lr: float = 1e-3
    d_lr: float = 2e-4
    adv_weight: float = 0.1
    batch_size: int = 64
    decoder_lr: float = 2e-3
    decoder_batch: int = 16
    augment: bool = True


@dataclass
class ForaResult:
    images: Tensor  # reconstructions of the intercepted features, (M, C, H, W) in [0, 1]
    substitute: SubstituteFit
    inverse: InverseNet
    seconds: float

    def info(self) -> dict:
        return {"substitute": asdict(self.substitute), "inverse": self.inverse.info(),
                "seconds": self.seconds}  # fmt: skip


def reconstruct_fora(
    aux_inputs: Tensor,
    intercepted: Tensor,
    seconds: float | None,
    steps: int,
    device: torch.device | str,
    settings: ForaSettings = ForaSettings(),
    seed: int = 0,
) -> ForaResult:
    """Substitute head, inverse network, reconstructions of `intercepted`: all from aux images
    and the intercepted batch alone. `steps` caps each phase; `seconds` is split between them
    (`substitute_share` of it for the substitute, what is left for the inverse)."""
    started = time.perf_counter()
    sub_clock = Clock(None if seconds is None else seconds * settings.substitute_share, steps)
    sub, sub_fit = train_substitute(
        aux_inputs, intercepted, sub_clock, device, settings.width, settings.lr, settings.d_lr,
        settings.adv_weight, settings.batch_size, seed,
    )  # fmt: skip
    left = None if seconds is None else max(1e-3, seconds - (time.perf_counter() - started))
    inverse = train_inverse(
        sub, aux_inputs, tuple(intercepted.shape[1:]), Clock(left, steps), device,
        lr=settings.decoder_lr, batch_size=settings.decoder_batch,
        augment_images=settings.augment, seed=seed + 1,
    )  # fmt: skip
    images = inverse(intercepted, align=True)
    return ForaResult(images, sub_fit, inverse, time.perf_counter() - started)


@ATTACKS.register("fora")
class ForaAttack(Attack):
    """`fora`: the attacker who cannot reach the head (no head access). Its view holds aux
    images and the intercepted features, no head, no queries, no aux features: the substitute
    head is all it has (see the module docstring)."""

    name: ClassVar[str] = "fora"
    threat_model: ClassVar[ThreatModel] = ThreatModel.NO_HEAD_ACCESS
    default_seconds: ClassVar[float] = 60.0
    default_steps: ClassVar[int] = 3000
    params: ClassVar[dict[str, Param]] = {
        "substitute_share": Param(0.5, "share of the budget spent on the substitute head",
                                  float, 0.0, True, maximum=0.95),
        "width": Param(32, "substitute channels at full resolution", int, 1),
        "lr": Param(1e-3, "substitute learning rate", float, 0.0, True),
        "d_lr": Param(2e-4, "feature discriminator learning rate", float, 0.0, True),
        "adv_weight": Param(0.1, "weight of the discriminator term next to MK-MMD", float, 0.0),
        "batch_size": Param(64, "aux images / intercepted rows per substitute step", int, 2),
        "decoder_lr": Param(2e-3, "inverse network learning rate", float, 0.0, True),
        "decoder_batch": Param(16, "images per inverse-network step", int, 1),
        "augment": Param(True, "random flips and 1-px shifts of aux images", bool),
    }  # fmt: skip

    def settings(self) -> ForaSettings:
        return ForaSettings(**self.values)

    def fit(self, view: AttackerView) -> None:
        """Everything happens from aux images and the intercepted batch: the substitute is
        matched to the intercepted features' distribution, the inverse trained on it."""
        clock = self.clock()
        self.result = reconstruct_fora(
            view.aux_inputs, view.intercepted, clock.seconds, clock.steps, view.device,
            self.settings(), self.seed,
        )  # fmt: skip
        self.fitted = True

    def run(self, view: AttackerView) -> AttackOutput:
        self._require_fitted()
        return AttackOutput(reconstructions=self.result.images.cpu(), info=self.result.info())
