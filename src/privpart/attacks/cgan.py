"""`cgan`: pix2pix-style conditional GAN inversion (black-box query).

Generator: features -> input (see generator.py). Discriminator: a PatchGAN that sees the image
together with the (projected, resized) features, so it judges whether an image fits the features.
Generator loss = adversarial (non-saturating BCE) + lambda * L1 (lambda = 100 as in pix2pix):
the L1 term pins the content, the adversarial term sharpens what L1 alone blurs.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from privpart.attacks.generator import PatchDiscriminator
from privpart.attacks.reconstruction import ReconstructionAttack
from privpart.attacks.registry import ATTACKS
from privpart.attacks.view import AttackerView
from privpart.params import Param


@ATTACKS.register("cgan")
class CGANAttack(ReconstructionAttack):
    name: ClassVar[str] = "cgan"
    default_seconds: ClassVar[float] = 40.0
    default_steps: ClassVar[int] = 3000
    params: ClassVar[dict[str, Param]] = {
        **ReconstructionAttack.params,
        "l1_weight": Param(100.0, "weight of the L1 term (pix2pix's lambda)", float, 0.0),
        "d_lr": Param(2e-4, "discriminator learning rate", float, 0.0, exclusive=True),
        "cond_channels": Param(16, "channels the features are projected to for D", int, 1),
        "d_width": Param(32, "discriminator channels", int, 1),
    }

    def setup(self, view: AttackerView) -> None:
        v = self.values
        self.discriminator = PatchDiscriminator(
            view.feature_shape, view.input_shape, v["cond_channels"], v["d_width"]
        ).to(self.device)
        self.d_opt = torch.optim.Adam(
            self.discriminator.parameters(), lr=v["d_lr"], betas=(0.5, 0.999)
        )

    def train_step(self, features: Tensor, images: Tensor, lr: float) -> dict[str, float]:
        assert self.generator is not None
        scale = lr / self.values["lr"]  # both nets follow the same schedule
        for group in self.g_opt.param_groups:
            group["lr"] = lr
        for group in self.d_opt.param_groups:
            group["lr"] = self.values["d_lr"] * scale
        D = self.discriminator
        D.train()
        fake = self.generator(features)

        real_logits = D(images, features)
        fake_logits = D(fake.detach(), features)
        d_loss = 0.5 * (
            F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        )
        self.d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_opt.step()

        logits = D(fake, features)
        adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        l1 = F.l1_loss(fake, images)
        g_loss = adv + self.values["l1_weight"] * l1
        self.g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_opt.step()
        return {"d": d_loss.item(), "adv": adv.item(), "l1": l1.item()}
