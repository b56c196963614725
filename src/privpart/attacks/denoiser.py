"""`denoiser`: a decoder trained on fresh queries of augmented aux images (black-box query).

The `decoder` attack learns from one fixed (aux image, feature) pair per aux image, computed
once. This one queries the head on every training batch anew, on randomly flipped and shifted
aux images (`inverse_net.py`): many more pairs than the aux set holds, and, against the `noise`
defence, a fresh noise draw on every query. Trained on noisy features with clean targets, the
network learns E[x | noisy features], a denoising inverse; a decoder fitted to one frozen noise
draw per image memorises that draw instead. It is the adaptive attacker the audit adds when a
checkpoint's defence is `noise` (`adaptive_to`); on an undefended head it is an augmented
decoder (He et al.'s inverse network with query augmentation).
"""

from __future__ import annotations

from typing import ClassVar

from privpart.attacks.base import Attack, AttackOutput
from privpart.attacks.inverse_net import InverseNet, train_inverse
from privpart.attacks.registry import ATTACKS
from privpart.attacks.threat import ThreatModel
from privpart.attacks.view import AttackerView
from privpart.params import Param


@ATTACKS.register("denoiser")
class DenoiserAttack(Attack):
    name: ClassVar[str] = "denoiser"
    threat_model: ClassVar[ThreatModel] = ThreatModel.BLACK_BOX_QUERY
    adaptive_to: ClassVar[tuple[str, ...]] = ("noise", "bottleneck")
    default_seconds: ClassVar[float] = 30.0
    default_steps: ClassVar[int] = 3000
    params: ClassVar[dict[str, Param]] = {
        "lr": Param(2e-3, "peak learning rate (cosine decay over the budget)", float, 0.0, True),
        "batch_size": Param(16, "images per step (each one a fresh query)", int, 1),
        "augment": Param(True, "random flips and 1-px shifts of the aux images", bool),
        "base_width": Param(32, "generator channels at full resolution", int, 1),
        "max_width": Param(128, "generator channels at low resolution", int, 1),
    }  # fmt: skip

    def fit(self, view: AttackerView) -> None:
        v = self.values
        clock = self.clock()
        self.net: InverseNet = train_inverse(
            view.query, view.aux_inputs, view.feature_shape, clock, view.device, lr=v["lr"],
            batch_size=v["batch_size"], augment_images=v["augment"] and view.kind == "image",
            base_width=v["base_width"], max_width=v["max_width"], seed=self.seed,
        )  # fmt: skip
        self.fitted = True

    def run(self, view: AttackerView) -> AttackOutput:
        self._require_fitted()
        return AttackOutput(reconstructions=self.net(view.intercepted).cpu(),
                            info={"fit": self.net.info()})  # fmt: skip
