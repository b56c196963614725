from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from privpart.errors import PrivpartError
from privpart.runtime.client.images import load_image, load_images


def test_grey_image_at_model_size_is_scaled_to_unit_range(tmp_path: Path) -> None:
    array = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    Image.fromarray(array).save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png", (1, 28, 28))
    assert x.shape == (1, 28, 28)
    assert torch.allclose(x[0], torch.from_numpy(array).float() / 255)


def test_colour_and_size_are_adapted(tmp_path: Path) -> None:
    Image.fromarray(np.full((50, 40, 3), 200, np.uint8)).save(tmp_path / "c.jpg")
    assert load_image(tmp_path / "c.jpg", (1, 28, 28)).shape == (1, 28, 28)
    x = load_images([tmp_path / "c.jpg"] * 2, (3, 32, 32))
    assert x.shape == (2, 3, 32, 32) and float(x.min()) >= 0 and float(x.max()) <= 1


def test_unreadable_files_fail_clearly(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.raises(PrivpartError, match="cannot read image"):
        load_image(tmp_path / "x.png", (1, 28, 28))
    with pytest.raises(PrivpartError, match="1 or 3"):
        load_image(tmp_path / "x.png", (4, 28, 28))
