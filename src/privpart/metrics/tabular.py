"""Per-feature reconstruction error for tabular rows laid out on a k x k grid.

Tabular rows reach the model as nearest-upsampled k x k grids, so adaptive average pooling back
to the native grid recovers each cell (and averages a reconstruction over the cell's pixels).
Cell i in row-major order is column `feature_names[i]`; padding cells are ignored.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def to_native_cells(x: Tensor, native_size: tuple[int, int], n_features: int) -> Tensor:
    """(N, C, H, W) model-size inputs -> (N, n_features) values of the native grid cells."""
    if tuple(x.shape[2:]) != tuple(native_size):
        x = F.adaptive_avg_pool2d(x.float(), native_size)
    return x.float().mean(1).flatten(1)[:, :n_features]


def per_row_mae(
    pred: Tensor, target: Tensor, native_size: tuple[int, int], n_features: int
) -> Tensor:
    """Mean absolute error over the real columns, one value per row."""
    return (to_native_cells(pred.clamp(0, 1), native_size, n_features)
            - to_native_cells(target, native_size, n_features)).abs().mean(1)  # fmt: skip


def per_feature_mae(
    pred: Tensor, target: Tensor, native_size: tuple[int, int], feature_names: list[str]
) -> tuple[float, dict[str, float]]:
    """(mean over features of the mean absolute error, {column: mean absolute error})."""
    n = len(feature_names)
    err = (to_native_cells(pred.clamp(0, 1), native_size, n)
           - to_native_cells(target, native_size, n)).abs().mean(0)  # fmt: skip
    return float(err.mean()), {name: float(e) for name, e in zip(feature_names, err, strict=True)}


def default_feature_names(n: int) -> list[str]:
    return [f"cell{i}" for i in range(n)]
