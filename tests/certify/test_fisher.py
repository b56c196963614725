"""The certified Fisher-information bound: exact in closed form, attained where the theory says,
and never beaten by an attacker without a prior."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from privpart.certify import certify, fisher_trace, noise_site
from privpart.certify import fisher as fisher_mod
from privpart.models.wrappers import CutNoise
from privpart.partition import trace


def linear_head(w: torch.Tensor, sigma: float) -> torch.fx.GraphModule:
    d = w.shape[1]
    lin = nn.Linear(d, w.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    return trace(nn.Sequential(nn.Flatten(), lin, CutNoise(torch.ones(1, w.shape[0]), sigma)))


def test_linear_head_closed_form() -> None:
    """z = W x + sigma e: I = W^T W / sigma^2, so dFIL = ||W||_F^2 / (sigma^2 d) exactly."""
    g = torch.Generator().manual_seed(0)
    d, sigma = 16, 0.3
    w = torch.randn(24, d, generator=g)
    x = torch.rand(5, 1, 4, 4, generator=g)
    bound = certify(linear_head(w, sigma), x)
    assert bound is not None and bound.method == "exact" and bound.kind == "certified"
    expected = float(w.pow(2).sum()) / (sigma**2 * d)
    assert bound.dfil == pytest.approx(expected, rel=1e-5)
    assert bound.mse_floor == pytest.approx(1 / expected, rel=1e-5)
    assert bound.psnr_ceiling_db == pytest.approx(10 * math.log10(expected), rel=1e-5)
    assert "unbiased" in bound.covers


def test_bound_is_attained_by_least_squares_on_an_orthogonal_head() -> None:
    """W = c Q (Q orthogonal): least squares is unbiased with MSE sigma^2 / c^2 = the floor."""
    g = torch.Generator().manual_seed(1)
    d, c, sigma = 16, 2.0, 0.5
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    w = (c * q).float()
    x = torch.rand(400, 1, 4, 4, generator=g)
    bound = certify(linear_head(w, sigma), x[:8])
    assert bound is not None
    assert bound.mse_floor == pytest.approx(sigma**2 / c**2, rel=1e-4)
    z = x.flatten(1).double() @ w.double().T + sigma * torch.randn(
        400, d, generator=g, dtype=torch.float64
    )
    x_hat = torch.linalg.lstsq(w.double(), z.T).solution.T
    mse = float((x_hat - x.flatten(1).double()).pow(2).mean())
    # 400 x 16 squared errors: the MC mean is within ~3 % of sigma^2/c^2 (chi-square, 6400 dof)
    assert mse == pytest.approx(bound.mse_floor, rel=0.06)


def test_non_orthogonal_head_bound_below_the_efficient_estimator() -> None:
    """CRB: tr((W^T W)^-1) sigma^2 / d (the efficient unbiased MSE) >= d / tr(W^T W / sigma^2)."""
    g = torch.Generator().manual_seed(2)
    d, sigma = 16, 0.4
    w = torch.randn(d, d, generator=g, dtype=torch.float64) + 3 * torch.eye(d, dtype=torch.float64)
    bound = certify(linear_head(w.float(), sigma), torch.rand(3, 1, 4, 4, generator=g))
    assert bound is not None
    efficient = float(torch.linalg.inv(w.T @ w).trace()) * sigma**2 / d
    assert bound.mse_floor <= efficient * (1 + 1e-5)


def test_hutchinson_estimate_is_an_upper_limit_on_the_trace(monkeypatch) -> None:
    g = torch.Generator().manual_seed(3)
    w = torch.randn(24, 16, generator=g)
    head = linear_head(w, 1.0)
    pre, noise, path = noise_site(head)
    assert path.endswith("2")  # the CutNoise in the Sequential
    x = torch.rand(6, 1, 4, 4, generator=g)
    exact, how = fisher_trace(pre, torch.ones(24), x)
    assert how == "exact"
    monkeypatch.setattr(fisher_mod, "EXACT_LIMIT", 0)
    est, how = fisher_trace(pre, torch.ones(24), x, probes=256)
    assert how == "hutchinson-256"
    assert torch.all(est >= exact * 0.97)  # an upper confidence limit, rarely below
    assert torch.allclose(est, exact, rtol=0.35)


def test_noiseless_head_certifies_nothing() -> None:
    head = trace(nn.Sequential(nn.Flatten(), nn.Linear(16, 8)))
    assert certify(head, torch.rand(2, 1, 4, 4)) is None
    assert certify(linear_head(torch.randn(8, 16), 0.0), torch.rand(2, 1, 4, 4)) is None


def test_whitebox_without_prior_never_beats_the_unbiased_bound() -> None:
    """The white-box inversion (no TV prior, pixel space) on a small noisy conv head: its MSE
    on every victim stays at or above the certified floor (up to Monte-Carlo slack)."""
    from privpart.attacks.base import Clock
    from privpart.attacks.inversion import invert

    torch.manual_seed(0)
    conv = nn.Conv2d(1, 6, 3, padding=1)
    model = nn.Sequential(conv, nn.Tanh(), CutNoise(torch.ones(1, 6, 1, 1), 0.05))
    head = trace(model).eval()
    g = torch.Generator().manual_seed(4)
    x = 0.3 + 0.4 * torch.rand(12, 1, 8, 8, generator=g)  # inside the box: clamping is idle
    bound = certify(head, x)
    assert bound is not None
    with torch.no_grad():
        observed = head(x)
    clean = trace(nn.Sequential(conv, nn.Tanh())).eval().requires_grad_(False)
    starts = torch.full((12, 1, 1, 8, 8), 0.5)
    res = invert(clean, observed, starts, Clock(None, 600), 0.0, 0.05, 0.0, 64)
    mse = (res.images - x).pow(2).flatten(1).mean(1)
    assert float(mse.mean()) >= 0.8 * bound.mse_floor, (float(mse.mean()), bound.mse_floor)
