"""Image files -> model inputs, the same way training prepares data (floats in [0, 1], bilinear
antialiased resize to the model's input size, grey or RGB to match its channels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from privpart.errors import PrivpartError

MODES = {1: "L", 3: "RGB"}


def load_image(path: Path, input_shape: tuple[int, ...]) -> torch.Tensor:
    """One image as a `[C, H, W]` float tensor for a model taking `input_shape`."""
    c, h, w = input_shape
    if c not in MODES:
        raise PrivpartError(
            f"the model takes {c}-channel inputs; images have 1 or 3",
            "use infer on image models only",
        )
    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert(MODES[c]), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise PrivpartError(
            f"cannot read image {path}: {exc}", "pass PNG, JPEG or another format Pillow reads"
        ) from None
    x = torch.from_numpy(array.copy()).float().div_(255.0)
    x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
    if tuple(x.shape[1:]) != (h, w):
        x = F.interpolate(
            x[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True
        )[0].clamp_(0.0, 1.0)
    return x


def load_images(paths: list[Path], input_shape: tuple[int, ...]) -> torch.Tensor:
    return torch.stack([load_image(p, input_shape) for p in paths])
