"""The one picture of an attack result: victims (top row) above what the attacker recovered.

Reconstructions: a two-row image grid (victim inputs, reconstructions), nearest-upscaled so
small images show. Attribute predictions: the victims, each titled `truth -> prediction`.
The audit and `privpart attack` both write their grids here; reports only link to the files.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.utils import make_grid

from privpart.attacks.result import AttackResult


def save_image_rows(
    originals: torch.Tensor, reconstructions: torch.Tensor, path: Path, n: int = 8, scale: int = 3
) -> Path:
    """Write a 2-row PNG (originals, reconstructions)."""
    k = min(n, originals.shape[0], reconstructions.shape[0])
    rows = torch.cat([originals[:k], reconstructions[:k].to(originals.dtype)]).float().clamp(0, 1)
    if rows.shape[1] not in (1, 3):
        rows = rows[:, :1]
    grid = make_grid(rows, nrow=k, padding=2, pad_value=1.0)
    if scale > 1:
        grid = F.interpolate(grid[None], scale_factor=scale, mode="nearest")[0]
    array = (grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    if array.shape[2] == 1:
        array = array[:, :, 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _titled_victims(result: AttackResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    originals = result.sample_inputs
    assert originals is not None
    truth = result.config.get("sample_truth") or []
    pred = result.config.get("sample_predictions") or []
    k = originals.shape[0]
    fig, axes = plt.subplots(1, k, figsize=(1.1 * k, 1.65), squeeze=False)
    for i in range(k):
        img = originals[i].detach().float().clamp(0, 1)
        pixels = (img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)).numpy()
        ax = axes[0][i]
        ax.imshow(pixels, cmap="gray", vmin=0, vmax=1)
        if i < len(truth) and i < len(pred):
            ax.set_title(f"{truth[i]}\n-> {pred[i]}", fontsize=6)
        ax.axis("off")
    head = result.headline
    label = f": {head.spec.label} {head.value:{head.spec.fmt}}" if head is not None else ""
    fig.suptitle(f"{result.attack} @ {result.cut}{label}", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_grid(result: AttackResult, path: Path) -> Path | None:
    """The result's picture at `path`, or None when it has no images (tabular rows)."""
    if result.config.get("kind", "image") != "image" or result.sample_inputs is None:
        return None
    if result.samples is not None:
        return save_image_rows(result.sample_inputs, result.samples, path)
    return _titled_victims(result, path)
