"""Reconstruction grids: victim originals (top row) above an attack's reconstructions."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.utils import make_grid


def save_grid(
    originals: torch.Tensor, reconstructions: torch.Tensor, path: Path, n: int = 8, scale: int = 3
) -> Path:
    """Write a 2-row PNG (originals, reconstructions), nearest-upscaled so small images show."""
    k = min(n, originals.shape[0], reconstructions.shape[0])
    rows = torch.cat([originals[:k], reconstructions[:k].to(originals.dtype)]).float().clamp(0, 1)
    if rows.shape[1] not in (1, 3):
        rows = rows[:, :1]
    grid = make_grid(rows, nrow=k, padding=2, pad_value=1.0)
    grid = F.interpolate(grid[None], scale_factor=scale, mode="nearest")[0]
    array = (grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    if array.shape[2] == 1:
        array = array[:, :, 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path
