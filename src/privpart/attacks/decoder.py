"""`decoder`: the c-GAN's generator trained with a pixel loss only (black-box query).

The classic learned-inversion attack (He et al. 2019 "inverse network"): cheaper and more stable
than the c-GAN under small budgets; its reconstructions are blurrier where features are ambiguous.
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from privpart.attacks.reconstruction import ReconstructionAttack
from privpart.attacks.registry import ATTACKS
from privpart.params import Param

LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}


@ATTACKS.register("decoder")
class DecoderAttack(ReconstructionAttack):
    """Generator trained on aux (features, input) pairs with an L1 (or MSE) pixel loss."""

    name: ClassVar[str] = "decoder"
    default_seconds: ClassVar[float] = 30.0
    default_steps: ClassVar[int] = 3000
    params: ClassVar[dict[str, Param]] = {
        **ReconstructionAttack.params,
        "loss": Param("l1", "pixel loss", str, choices=tuple(LOSSES)),
    }

    def train_step(self, features: Tensor, images: Tensor, lr: float) -> dict[str, float]:
        assert self.generator is not None
        for group in self.g_opt.param_groups:
            group["lr"] = lr
        loss = LOSSES[self.values["loss"]](self.generator(features), images)
        self.g_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.g_opt.step()
        return {"loss": loss.item()}
