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


def per_image_ssim(pred: Tensor, target: Tensor, window: SSIMWindow | None = None) -> Tensor:
    """SSIM of each image pair in [0, 1] (data range 1); NaN where SSIM is undefined."""
    pred, target = _check(pred, target)
    window = window or ssim_window(*pred.shape[2:])
    if window is None:
        return torch.full((pred.shape[0],), float("nan"))
    return structural_similarity_index_measure(
        pred,
        target,
        kernel_size=window.kernel_size,
        sigma=window.sigma,
        data_range=1.0,
        reduction="none",
    ).reshape(-1)


def per_image_psnr(pred: Tensor, target: Tensor) -> Tensor:
    """PSNR of each image pair in dB (data range 1), capped at PSNR_CAP_DB."""
    pred, target = _check(pred, target)
    per_image = peak_signal_noise_ratio(
        pred, target, data_range=1.0, reduction="none", dim=(1, 2, 3)
    )
    return torch.nan_to_num(per_image, posinf=PSNR_CAP_DB).clamp(max=PSNR_CAP_DB)


def per_image_mse(pred: Tensor, target: Tensor) -> Tensor:
    pred, target = _check(pred, target)
    return (pred - target).pow(2).flatten(1).mean(1)


def ssim(pred: Tensor, target: Tensor, window: SSIMWindow | None = None) -> float:
    """Mean SSIM over images in [0, 1] (data_range 1); NaN where SSIM is undefined."""
    return float(per_image_ssim(pred, target, window).mean())


def psnr(pred: Tensor, target: Tensor) -> float:
    """Mean per-image PSNR in dB (data_range 1), each capped at PSNR_CAP_DB."""
    return float(per_image_psnr(pred, target).mean())


def mse(pred: Tensor, target: Tensor) -> float:
    return float(per_image_mse(pred, target).mean())


def image_scores(pred: Tensor, target: Tensor) -> tuple[dict[str, float], dict]:
    """({"ssim", "psnr", "mse"}, {"ssim_window": ...}) for reconstructions vs originals."""
    window = ssim_window(*target.shape[2:])
    scores = {"ssim": ssim(pred, target, window), "psnr": psnr(pred, target),
              "mse": mse(pred, target)}  # fmt: skip
    return scores, {"ssim_window": None if window is None else window.to_dict()}
