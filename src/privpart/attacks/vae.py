"""A small convolutional VAE trained on the attacker's aux images: the learned image prior of the
`prior` attacks (GLASS, NeurIPS 2023, uses a StyleGAN; a CPU budget buys a VAE).

Why a VAE and not a GAN: it trains stably in seconds on a few thousand images, and its encoder
gives every latent optimisation a good start (encode the nearest aux image or a decoder's guess).
Its decoder G maps a latent z ~ N(0, I) to an image in [0, 1]; searching z instead of pixels
keeps a reconstruction on the manifold of images like the aux set, which is what pixel-space
optimisation loses where the cut discards information.

Layout: the image side is padded up to a multiple of 8 (28 -> 32), three stride-2 stages down to
a (side / 8)^2 map, a linear to the latent mean / log-variance; the generator mirrors it and
crops back. Widths shrink with resolution as in the attacks' generator (CPU budgets).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from privpart.attacks.base import Clock, cosine_lr


def _padded(side: int) -> int:
    return max(8, math.ceil(side / 8) * 8)


class VAE(nn.Module):
    """x (N, C, H, W) in [0, 1] <-> z (N, latent)."""

    def __init__(self, image_shape: tuple[int, int, int], latent: int = 64, width: int = 32):
        super().__init__()
        c, h, w = image_shape
        self.image_shape = (c, h, w)
        self.latent = latent
        self.ph, self.pw = _padded(h), _padded(w)
        s = (self.ph // 8, self.pw // 8)
        self.seed = s
        ws = [width, width * 2, width * 4]
        self.encoder = nn.Sequential(
            nn.Conv2d(c, ws[0], 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(ws[0], ws[1], 4, 2, 1), nn.BatchNorm2d(ws[1]), nn.LeakyReLU(0.2),
            nn.Conv2d(ws[1], ws[2], 4, 2, 1), nn.BatchNorm2d(ws[2]), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(ws[2] * s[0] * s[1], 2 * latent),
        )  # fmt: skip
        self.generator = nn.Sequential(
            nn.Linear(latent, ws[2] * s[0] * s[1]), nn.Unflatten(1, (ws[2], *s)), nn.ReLU(),
            nn.ConvTranspose2d(ws[2], ws[1], 4, 2, 1), nn.BatchNorm2d(ws[1]), nn.ReLU(),
            nn.ConvTranspose2d(ws[1], ws[0], 4, 2, 1), nn.BatchNorm2d(ws[0]), nn.ReLU(),
            nn.ConvTranspose2d(ws[0], c, 4, 2, 1),
        )  # fmt: skip

    def _pad(self, x: Tensor) -> Tensor:
        h, w = x.shape[2:]
        return F.pad(x, (0, self.pw - w, 0, self.ph - h)) if (h, w) != (self.ph, self.pw) else x

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log-variance) of q(z | x)."""
        mu, logvar = self.encoder(self._pad(x.float())).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)

    def decode(self, z: Tensor) -> Tensor:
        """Images in [0, 1] (sigmoid of the logits, cropped to the input size)."""
        return torch.sigmoid(self.decode_logits(z))

    def decode_logits(self, z: Tensor) -> Tensor:
        _, h, w = self.image_shape
        return self.generator(z)[:, :, :h, :w]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decode_logits(z), mu, logvar


@dataclass
class VAEFit:
    steps: int
    seconds: float
    final_loss: float
    val_l1: float  # mean |x - G(E(x))| on held-out aux images


def vae_loss(model: VAE, x: Tensor, beta: float) -> Tensor:
    """Per-pixel BCE reconstruction + beta * KL per latent dimension, scaled per pixel."""
    logits, mu, logvar = model(x)
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    return (rec + beta * kl).mean() / x[0].numel()


def train_vae(
    images: Tensor,
    clock: Clock,
    device: torch.device | str,
    latent: int = 64,
    width: int = 32,
    beta: float = 0.5,
    lr: float = 2e-3,
    batch_size: int = 64,
    seed: int = 0,
    augment: bool = True,
) -> tuple[VAE, VAEFit]:
    """Train a VAE on `images` (aux only) within `clock`; the model comes back in eval mode.

    `augment`: random horizontal flips and 1-px shifts (the aux set is small)."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    n = images.shape[0]
    n_val = min(max(1, n // 20), 128) if n > 8 else 0
    perm = torch.randperm(n, generator=g)
    train, val = images[perm[n_val:]].to(device).float(), images[perm[:n_val]].to(device).float()
    model = VAE(tuple(images.shape[1:]), latent, width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    bs = min(batch_size, train.shape[0])
    loss_value = float("nan")
    while not clock.done:
        idx = torch.randint(0, train.shape[0], (bs,), generator=g).to(device)
        x = train[idx]
        if augment:
            x = _augment(x, g)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(lr, clock.fraction)
        model.train()
        loss = vae_loss(model, x, beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        clock.tick()
        loss_value = loss.item()
    model.eval().requires_grad_(False)
    with torch.no_grad():
        val_l1 = float((model.decode(model.encode(val)[0]) - val).abs().mean()) if n_val else 0.0
    return model, VAEFit(clock.step, time.perf_counter() - started, loss_value, val_l1)


def _augment(x: Tensor, g: Tensor | torch.Generator) -> Tensor:
    flip = torch.rand(x.shape[0], generator=g) < 0.5
    x = torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(3), x)
    dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=g))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))
