"""A generated image folder with a per-image private attribute: for tests, benchmarks and trying
privpart without a dataset (nothing is downloaded).

Layout: `ROOT/<class>/<i>.<png|jpg>` (torchvision's ImageFolder) plus `ROOT/attributes.csv`
(`file,tint`). Each image is smooth noise with a bright block whose position encodes the class
(learnable by any CNN) and a colour cast encoding the attribute `tint` (warm / cool), which is
independent of the class: an attribute the task label does not reveal.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

TINTS = ("cool", "warm")


def _image(rng: np.random.Generator, label: int, classes: int, tint: int, size: int) -> Image.Image:
    base = rng.integers(20, 90, (12, 12, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(base).resize((size, size), Image.BILINEAR), dtype=np.int16)
    cols = max(2, int(np.ceil(np.sqrt(classes))))
    cell = size // cols
    r, c = divmod(label, cols)
    jitter = rng.integers(0, max(1, cell // 4), 2)
    top, left = r * cell + jitter[0], c * cell + jitter[1]
    img[top : top + cell // 2, left : left + cell // 2] += 140
    img[..., 0 if tint else 2] += 40  # warm: more red; cool: more blue
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def write_image_folder(
    root: Path,
    n: int,
    classes: int = 4,
    size: int = 224,
    fmt: str = "jpg",
    seed: int = 0,
    grey: bool = False,
) -> Path:
    """Write `n` images (`fmt`: png or jpg) under `root` and `root/attributes.csv`; returns
    `root`. Deterministic in `seed`; existing files are overwritten."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = [f"c{k}" for k in range(classes)]
    for name in names:
        (root / name).mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        label, tint = int(rng.integers(classes)), int(rng.integers(2))
        img = _image(rng, label, classes, tint, size)
        if grey:
            img = img.convert("L")
        rel = f"{names[label]}/{i:06d}.{fmt}"
        img.save(root / rel, quality=90) if fmt == "jpg" else img.save(root / rel)
        rows.append((rel, TINTS[tint]))
    with (root / "attributes.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "tint"])
        w.writerows(rows)
    return root
