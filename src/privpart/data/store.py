"""Where a dataset's inputs live: in memory (a tensor) or on disk (decoded on demand).

A store hands out *raw* samples at a requested size: uint8 for decoded images (and in-memory
uint8 images at their own size), float in [0, 1] otherwise. `to_unit` turns raw batches into model
inputs in [0, 1]. Raw uint8 crosses the worker-process boundary and the host-to-device copy at a
quarter of float32's bytes; the conversion runs where the model does.

Stores that decode files (`streamed = True`) are read through `torch.utils.data` worker
processes (`privpart.data.loading`); nothing ever holds all their images.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from privpart.errors import PrivpartError

Size = tuple[int, int]


def to_unit(x: Tensor) -> Tensor:
    """Raw samples -> float in [0, 1] (uint8 is divided by 255; floats pass through)."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def _resize_unit(x: Tensor, size: Size, nearest: bool) -> Tensor:
    """Float (n, C, H, W) in [0, 1] resized to `size` (antialiased bilinear, or nearest)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if nearest:
        return F.interpolate(x, size=size, mode="nearest")
    out = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)


class ImageStore(ABC):
    """Samples by index at any requested size; see the module docstring."""

    streamed: ClassVar[bool] = False  # decoding costs per sample: read through worker processes

    @abstractmethod
    def __len__(self) -> int: ...

    @property
    @abstractmethod
    def channels(self) -> int: ...

    @property
    @abstractmethod
    def native_size(self) -> Size:
        """The size samples have unless another is asked for (a folder's `@SIZE`)."""

    @abstractmethod
    def sample(self, i: int, size: Size) -> Tensor:
        """Raw sample `i` as (C, *size)."""

    def batch(self, index: Sequence[int] | Tensor, size: Size) -> Tensor:
        """Raw samples (n, C, *size); mixed raw dtypes are unified in [0, 1] floats."""
        items = [self.sample(int(i), size) for i in index]
        if len({t.dtype for t in items}) > 1:
            items = [to_unit(t) for t in items]
        return torch.stack(items)

    def keys(self) -> list[str] | None:
        """A stable name per sample (a file's path under the root), for per-image attributes."""
        return None


class TensorStore(ImageStore):
    """Everything in one tensor: IDX images (uint8) and tabular grids (float in [0, 1])."""

    def __init__(self, data: Tensor, nearest: bool = False) -> None:
        if data.dim() != 4:
            raise ValueError(f"expected (N, C, H, W) samples, got shape {tuple(data.shape)}")
        self.data = data
        self.nearest = nearest  # tabular grids keep their cells: nearest-neighbour resizing

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def channels(self) -> int:
        return int(self.data.shape[1])

    @property
    def native_size(self) -> Size:
        return int(self.data.shape[2]), int(self.data.shape[3])

    def sample(self, i: int, size: Size) -> Tensor:
        return self.batch(torch.tensor([i]), size)[0]

    def batch(self, index: Sequence[int] | Tensor, size: Size) -> Tensor:
        index = torch.as_tensor(index, dtype=torch.long)
        x = self.data[index]
        if tuple(size) == self.native_size:
            return x
        return _resize_unit(to_unit(x), size, self.nearest)


def _pil_to_raw(img: Any, mode: str, size: Size) -> Tensor:
    """A PIL image -> uint8 (C, *size): converted to `mode`, resized as torchvision's Resize."""
    from torchvision.transforms import functional as TF

    img = img.convert(mode)
    if (img.height, img.width) != tuple(size):
        img = TF.resize(img, list(size), antialias=True)
    return TF.pil_to_tensor(img)


class FolderStore(ImageStore):
    """Image files, decoded and resized only when a sample is asked for."""

    streamed: ClassVar[bool] = True

    def __init__(self, root: Path, files: Sequence[str], mode: str, size: Size) -> None:
        self.root = Path(root)
        self.files = list(files)  # relative to root
        self.mode = mode  # PIL mode: "L" (grey) or "RGB"
        self.size = (int(size[0]), int(size[1]))

    def __len__(self) -> int:
        return len(self.files)

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    @property
    def native_size(self) -> Size:
        return self.size

    def sample(self, i: int, size: Size) -> Tensor:
        from PIL import Image, UnidentifiedImageError

        path = self.root / self.files[i]
        try:
            with Image.open(path) as img:
                return _pil_to_raw(img, self.mode, size)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise PrivpartError(
                f"cannot decode image {path}: {exc}",
                "remove or replace the file (every file under the class folders must be an image)",
            ) from exc

    def keys(self) -> list[str]:
        return list(self.files)


class TorchStore(ImageStore):
    """Any map-style `torch.utils.data.Dataset` whose items are `(image, label[, ...])`.

    Images may be PIL images, uint8 or float tensors (C, H, W) or (H, W), or numpy arrays
    (H, W[, C]); float images must already be in [0, 1] (no normalisation: that belongs to the
    model, see `privpart.models.Normalization`).
    """

    streamed: ClassVar[bool] = True

    def __init__(self, dataset: Any, size: Size | None = None) -> None:
        self.dataset = dataset
        n = len(dataset)
        if n == 0:
            raise PrivpartError("the dataset is empty", "give a dataset with samples")
        first = self._raw(0, None)
        self._channels = int(first.shape[0])
        self._native = (int(first.shape[1]), int(first.shape[2]))
        self.size = (int(size[0]), int(size[1])) if size else self._native
        self.mode = "L" if self._channels == 1 else "RGB"

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def native_size(self) -> Size:
        return self.size

    def _raw(self, i: int, size: Size | None) -> Tensor:
        item = self.dataset[i]
        image = item[0] if isinstance(item, tuple | list) else item
        if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image
            mode = "L" if image.mode in ("L", "1", "I", "I;16", "F") else "RGB"
            target = size or (image.height, image.width)
            return _pil_to_raw(image, getattr(self, "mode", mode), target)
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(np.ascontiguousarray(image))
            if image.dim() == 3 and image.shape[-1] in (1, 3) and image.shape[0] not in (1, 3):
                image = image.permute(2, 0, 1)
        if not isinstance(image, Tensor):
            raise PrivpartError(
                f"sample {i} is a {type(image).__name__}, not an image",
                "make the dataset yield (image, label): a PIL image, tensor or numpy array",
            )
        if image.dim() == 2:
            image = image[None]
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise PrivpartError(
                f"sample {i} has shape {tuple(image.shape)}: expected (C, H, W), C = 1 or 3",
                "make the dataset yield one image per item (C x H x W)",
            )
        if image.dtype != torch.uint8:
            image = image.float()
            lo, hi = float(image.min()), float(image.max())
            if lo < -1e-3 or hi > 1 + 1e-3:
                raise PrivpartError(
                    f"sample {i} has float values outside [0, 1] ([{lo:.2f}, {hi:.2f}]): the "
                    "dataset seems to normalise its images",
                    "return images in [0, 1]: privpart attacks and scores in image space; put the "
                    "normalisation inside the model (ModelSpec.normalization, `normalize`)",
                )
        if size is not None and tuple(image.shape[1:]) != tuple(size):
            image = _resize_unit(to_unit(image)[None], size, nearest=False)[0]
        return image

    def sample(self, i: int, size: Size) -> Tensor:
        return self._raw(i, size)
