"""Leakage metrics from a library (torchmetrics), and the baselines every score is read against."""

from privpart.metrics.baselines import (
    label_mean_image_baseline,
    majority_baseline,
    mean_image_baseline,
    task_floor_baseline,
)
from privpart.metrics.image import (
    PSNR_CAP_DB,
    SSIMWindow,
    image_scores,
    mse,
    psnr,
    ssim,
    ssim_window,
)
from privpart.metrics.tabular import mean_row_baseline, per_feature_mae, to_native_cells

__all__ = [
    "PSNR_CAP_DB", "SSIMWindow", "image_scores", "label_mean_image_baseline", "majority_baseline",
    "mean_image_baseline", "mean_row_baseline", "mse", "per_feature_mae", "psnr", "ssim",
    "ssim_window", "task_floor_baseline", "to_native_cells",
]  # fmt: skip
