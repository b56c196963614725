"""The in-memory dataset every other stage consumes, and its mapping to model inputs."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from privpart.errors import PrivpartError


@dataclass(frozen=True)
class Attribute:
    """A per-sample property (task label or private attribute) with its class names."""

    values: torch.Tensor  # int64, shape (N,)
    classes: list[str]


@dataclass(frozen=True)
class Dataset:
    """Images as uint8 (N, C, H, W), or tabular rows as float grids in [0, 1] (N, 1, k, k).

    `test_start` marks where an official test set begins (samples from there on are test data),
    so target-training and victim samples come from the sides the dataset's authors intended.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    source: str
    kind: str = "image"  # "image" | "tabular"
    test_start: int | None = None
    attributes: dict[str, Attribute] = field(default_factory=dict)
    feature_names: list[str] | None = None  # tabular: grid cell i (row-major) -> column name

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def native_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def default_input_size(self, minimum: int = 32) -> tuple[int, int]:
        """Smallest size >= `minimum` the seed CNNs accept; 28x28 images become 32x32."""
        h, w = self.native_size
        return max(h, minimum), max(w, minimum)

    def with_task(self, attribute: str) -> Dataset:
        """The same data with another attribute (e.g. the coarse `group`) as the task label."""
        if attribute not in self.attributes:
            raise PrivpartError(
                f"dataset {self.name} has no attribute {attribute!r}",
                f"available: {', '.join(sorted(self.attributes)) or 'none'}",
            )
        attr = self.attributes[attribute]
        return replace(self, labels=attr.values, classes=attr.classes)

    def inputs(self, index: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Float model inputs in [0, 1] at `size` for the samples `index`."""
        x = self.images[index]
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if tuple(x.shape[2:]) != tuple(size):
            mode = "nearest" if self.kind == "tabular" else "bilinear"
            kwargs = {} if mode == "nearest" else {"align_corners": False, "antialias": True}
            x = F.interpolate(x, size=size, mode=mode, **kwargs).clamp_(0.0, 1.0)
        return x
