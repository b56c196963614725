"""Image reconstruction quality (SSIM, PSNR, MSE) via torchmetrics, robust to tiny images.

SSIM's usual 11x11 gaussian window (sigma 1.5) needs images of at least 11 px and is only
meaningful well above that; for small inputs (8x8 images, tabular grids) the window shrinks
with the image and its sigma shrinks in proportion. The window used is always reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

PSNR_CAP_DB = 100.0  # a perfect reconstruction has infinite PSNR; report this instead


@dataclass(frozen=True)
class SSIMWindow:
    kernel_size: int
    sigma: float

    def to_dict(self) -> dict:
        return asdict(self)


def ssim_window(height: int, width: int) -> SSIMWindow | None:
    """The standard 11/1.5 window from 16 px up; a proportionally smaller odd one below.

    None when the image is under 3 px (SSIM is undefined there).
    """
    side = min(height, width)
    if side >= 16:
        return SSIMWindow(11, 1.5)
    if side < 3:
        return None
    k = max(3, side // 2 + 1)
    k = k if k % 2 else k - 1
    return SSIMWindow(k, round(1.5 * k / 11, 4))


def _check(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f"need two (N, C, H, W) tensors of one shape, got {pred.shape} vs "
                         f"{target.shape}")  # fmt: skip
    return pred.detach().float().clamp(0, 1), target.detach().float()


def ssim(pred: Tensor, target: Tensor, window: SSIMWindow | None = None) -> float:
    """Mean SSIM over images in [0, 1] (data_range 1); NaN where SSIM is undefined."""
    pred, target = _check(pred, target)
    window = window or ssim_window(*pred.shape[2:])
    if window is None:
        return float("nan")
    value = structural_similarity_index_measure(
        pred, target, kernel_size=window.kernel_size, sigma=window.sigma, data_range=1.0
    )
    return float(value)


def psnr(pred: Tensor, target: Tensor) -> float:
    """Mean per-image PSNR in dB (data_range 1), each capped at PSNR_CAP_DB."""
    pred, target = _check(pred, target)
    per_image = peak_signal_noise_ratio(
        pred, target, data_range=1.0, reduction="none", dim=(1, 2, 3)
    )
    return float(torch.nan_to_num(per_image, posinf=PSNR_CAP_DB).clamp(max=PSNR_CAP_DB).mean())


def mse(pred: Tensor, target: Tensor) -> float:
    pred, target = _check(pred, target)
    return float(torch.mean((pred - target) ** 2))


def image_scores(pred: Tensor, target: Tensor) -> tuple[dict[str, float], dict]:
    """({"ssim", "psnr", "mse"}, {"ssim_window": ...}) for reconstructions vs originals."""
    window = ssim_window(*target.shape[2:])
    scores = {"ssim": ssim(pred, target, window), "psnr": psnr(pred, target),
              "mse": mse(pred, target)}  # fmt: skip
    return scores, {"ssim_window": None if window is None else window.to_dict()}
