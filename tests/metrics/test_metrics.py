from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from privpart.metrics import (
    PSNR_CAP_DB,
    image_scores,
    label_mean_guess,
    majority_class,
    mean_image_guess,
    per_feature_mae,
    psnr,
    ssim,
    ssim_window,
    task_floor_baseline,
    to_native_cells,
)


def _images(n: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size // 4, size // 4, generator=g)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def test_identical_images_score_perfectly_and_noise_lowers_scores() -> None:
    x = _images()
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-5)
    assert psnr(x, x) == PSNR_CAP_DB
    noisy = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert ssim(noisy, x) < 0.8 and psnr(noisy, x) < 20
    worse = (x + 0.4 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert ssim(worse, x) < ssim(noisy, x)


def test_psnr_is_the_mean_of_per_image_values() -> None:
    x = _images(2)
    y = x.clone()
    y[1] = (y[1] + 0.1).clamp(0, 1)
    per = 10 * math.log10(1 / float(((y[1] - x[1]) ** 2).mean()))
    assert psnr(y, x) == pytest.approx((PSNR_CAP_DB + per) / 2, rel=1e-4)


def test_ssim_window_shrinks_for_tiny_images() -> None:
    assert ssim_window(32, 32).kernel_size == 11 and ssim_window(28, 28).sigma == 1.5
    small = ssim_window(8, 8)
    assert small.kernel_size < 8 and small.kernel_size % 2 == 1 and small.sigma < 1.5
    assert ssim_window(6, 6).kernel_size == 3
    assert ssim_window(2, 2) is None
    x = _images(3, 8)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-5)
    scores, extra = image_scores(x, x)
    assert extra["ssim_window"]["kernel_size"] == small.kernel_size
    assert math.isnan(ssim(torch.rand(2, 1, 2, 2), torch.rand(2, 1, 2, 2)))


def test_the_mean_image_guess_is_the_aux_mean_for_every_victim() -> None:
    aux, victims = _images(20, seed=3), _images(5, seed=4)
    guess = mean_image_guess(aux, victims)
    assert guess.shape == victims.shape
    assert torch.allclose(guess, aux.mean(0, keepdim=True).expand_as(victims))


def test_majority_class() -> None:
    assert majority_class(torch.tensor([0, 1, 1, 1, 2]), 4) == 1
    assert majority_class(torch.tensor([3, 3]), 4) == 3


def test_pooling_recovers_nearest_upsampled_cells_and_per_feature_error() -> None:
    grid = torch.rand(4, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    big = F.interpolate(grid, size=(12, 12), mode="nearest")
    names = [f"f{i}" for i in range(7)]  # 7 columns on a 3x3 grid: 2 padding cells
    assert torch.allclose(to_native_cells(big, (3, 3), 7), grid.flatten(1)[:, :7])
    pred = big.clone()
    pred[:, :, 0:4, 4:8] += 0.1  # cell 1 (row 0, col 1) off by 0.1
    mae, per = per_feature_mae(pred.clamp(0, 1), big, (3, 3), names)
    assert set(per) == set(names)
    assert per["f0"] == pytest.approx(0.0, abs=1e-6)
    assert 0 < per["f1"] <= 0.1 + 1e-6
    assert mae == pytest.approx(sum(per.values()) / 7)
    base_mae, base_per = per_feature_mae(mean_image_guess(big, big), big, (3, 3), names)
    assert base_mae > 0 and set(base_per) == set(names)


def test_task_floor_guesses_the_attribute_from_the_label() -> None:
    # label 0 -> attribute 2 (mostly), label 1 -> attribute 0; an unseen label 2 -> majority
    aux_task = torch.tensor([0, 0, 0, 1, 1])
    aux_attr = torch.tensor([2, 2, 1, 0, 0])
    victim_task = torch.tensor([0, 1, 1, 2])
    victim_attr = torch.tensor([2, 0, 1, 0])
    assert task_floor_baseline(aux_task, aux_attr, victim_task, victim_attr) == 0.75


def test_label_mean_image_guesses_each_victims_label_prototype() -> None:
    # two labels with distinct constant-ish prototypes; the label-mean guess is exact for victims
    # equal to their prototype, the overall mean is not; an unseen label gets the overall mean
    lo, hi = _images(2, seed=1).split(1)
    aux = torch.cat([lo, lo, hi, hi])
    labels = torch.tensor([0, 0, 1, 1])
    victims = torch.cat([lo, hi])
    floor, _ = image_scores(label_mean_guess(aux, labels, victims, torch.tensor([0, 1])), victims)
    mean, _ = image_scores(mean_image_guess(aux, victims), victims)
    assert floor["mse"] == pytest.approx(0.0, abs=1e-9) and floor["ssim"] > mean["ssim"] + 0.3
    unseen = label_mean_guess(aux, labels, victims[:1], torch.tensor([2]))
    assert torch.allclose(unseen, mean_image_guess(aux, victims[:1]))
