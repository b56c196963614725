"""The learned image prior: a small VAE trained on aux images."""

from __future__ import annotations

import pytest
import torch

from privpart.attacks.base import Clock
from privpart.attacks.vae import VAE, train_vae


@pytest.mark.parametrize("shape", [(1, 32, 32), (1, 28, 28), (3, 8, 8), (1, 6, 6)])
def test_vae_round_trips_any_image_size(shape: tuple[int, int, int]) -> None:
    vae = VAE(shape, latent=8, width=8).eval()
    x = torch.rand(3, *shape)
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (3, 8)
    out = vae.decode(mu)
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1


def test_vae_training_learns_the_aux_images() -> None:
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(120, 1, 2, 2, generator=g)
    aux = torch.nn.functional.interpolate(coarse, size=8, mode="nearest")
    untrained = VAE((1, 8, 8), latent=8, width=8).eval()
    with torch.no_grad():
        before = float((untrained.decode(untrained.encode(aux)[0]) - aux).abs().mean())
    vae, fit = train_vae(aux, Clock(None, 150), "cpu", latent=8, width=8, lr=5e-3, augment=False)
    assert fit.steps == 150 and fit.val_l1 < 0.5 * before, (before, fit)
    assert not vae.training and not any(p.requires_grad for p in vae.parameters())
