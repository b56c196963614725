"""The substitute head of the no-head-access attack, and its distribution-matching loss."""

from __future__ import annotations

import pytest
import torch

from privpart.attacks.base import Clock
from privpart.attacks.substitute import (
    FeatureDiscriminator,
    SubstituteHead,
    mk_mmd,
    train_substitute,
)


@pytest.mark.parametrize(
    ("image", "feature"),
    [((1, 32, 32), (64, 16, 16)), ((1, 32, 32), (128, 8, 8)), ((3, 28, 28), (16, 7, 7)),
     ((1, 32, 32), (512, 1, 1)), ((1, 32, 32), (10,)), ((1, 8, 8), (4, 8, 8))],
)  # fmt: skip
def test_substitute_and_discriminator_fit_any_shape(image: tuple, feature: tuple) -> None:
    s = SubstituteHead(image, feature, nonnegative=True, width=8)
    with torch.no_grad():
        f = s(torch.rand(2, *image))
    assert f.shape == (2, *feature) and float(f.min()) >= 0
    assert FeatureDiscriminator(feature, width=8)(f).shape == (2,)


def test_mk_mmd_is_zero_for_one_distribution_and_grows_with_a_shift() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 10, generator=g), torch.randn(64, 10, generator=g)
    same = float(mk_mmd(a, a))
    near, far = float(mk_mmd(a, b)), float(mk_mmd(a, b + 2))
    assert abs(same) < 1e-6 and 0 < near < far


def test_substitute_learns_the_intercepted_distribution() -> None:
    """A few steps of MMD + discriminator bring the substitute's output distribution towards the
    intercepted batch: its MMD to the batch falls well below a fresh substitute's."""
    g = torch.Generator().manual_seed(0)
    aux = torch.rand(64, 1, 8, 8, generator=g)
    intercepted = torch.relu(torch.randn(48, 4, 4, 4, generator=g) * 0.5 + 1.0)
    fresh = SubstituteHead((1, 8, 8), (4, 4, 4), nonnegative=True, width=8).eval()
    with torch.no_grad():
        before = float(mk_mmd(fresh(aux[:48]), intercepted))
    sub, fit = train_substitute(aux, intercepted, Clock(None, 60), "cpu", width=8, lr=5e-3,
                                batch_size=32)  # fmt: skip
    with torch.no_grad():
        after = float(mk_mmd(sub(aux[:48]), intercepted))
    assert fit.steps == 60 and fit.nonnegative
    assert after < 0.5 * before, (before, after)
    assert not any(p.requires_grad for p in sub.parameters())
