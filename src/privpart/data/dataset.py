"""The dataset every other stage consumes: labels and attributes in memory, inputs on demand."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from privpart.data.loading import BatchLoader, chunks
from privpart.data.store import ImageStore, Size, TensorStore, to_unit
from privpart.errors import PrivpartError

# Below this many samples `inputs` decodes in the calling process: starting workers costs more.
INLINE_SAMPLES = 64


@dataclass(frozen=True)
class Attribute:
    """A per-sample property (task label or private attribute) with its class names."""

    values: torch.Tensor  # int64, shape (N,)
    classes: list[str]


@dataclass(frozen=True)
class Dataset:
    """Samples with a task label and named attributes; inputs come from `images`.

    `images` is either a tensor — uint8 images (N, C, H, W) or tabular rows as float grids in
    [0, 1] (N, 1, k, k), held in memory — or an `ImageStore` that decodes samples on demand
    (image folders, any torch dataset). Every consumer reads inputs through `inputs` (a few
    samples) or `loader` (batches, streamed through worker processes for decoding stores).

    `test_start` marks where an official test set begins (samples from there on are test data),
    so target-training and victim samples come from the sides the dataset's authors intended.
    """

    name: str
    images: Tensor | ImageStore
    labels: torch.Tensor
    classes: list[str]
    source: str
    kind: str = "image"  # "image" | "tabular"
    test_start: int | None = None
    attributes: dict[str, Attribute] = field(default_factory=dict)
    feature_names: list[str] | None = None  # tabular: grid cell i (row-major) -> column name
    store: ImageStore = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        store = self.images
        if isinstance(store, Tensor):
            store = TensorStore(store, nearest=self.kind == "tabular")
        if len(store) != int(self.labels.shape[0]):
            raise PrivpartError(
                f"dataset {self.name}: {len(store)} samples but {self.labels.shape[0]} labels",
                "give one label per sample",
            )
        object.__setattr__(self, "store", store)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def channels(self) -> int:
        return self.store.channels

    @property
    def native_size(self) -> Size:
        return self.store.native_size

    @property
    def streamed(self) -> bool:
        """True when inputs are decoded from files on demand (never all in memory)."""
        return self.store.streamed

    def default_input_size(self, minimum: int = 32) -> Size:
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

    def with_attributes(self, attributes: dict[str, Attribute]) -> Dataset:
        """The same data with more per-sample attributes (e.g. read from an attributes file)."""
        return replace(self, attributes={**self.attributes, **attributes})

    def loader(
        self,
        batches: Iterable[Tensor],
        size: Size,
        device: torch.device | None = None,
        workers: int | None = None,
    ) -> BatchLoader:
        """`(inputs in [0, 1] on device, indices)` per batch of indices in `batches`."""
        return BatchLoader(self.store, batches, size, device, workers)

    def inputs(
        self, index: Tensor, size: Size, device: torch.device | None = None, batch_size: int = 256
    ) -> Tensor:
        """Float model inputs in [0, 1] at `size` for the samples `index` (all at once: for
        batches and bounded splits; stream larger sets with `loader`)."""
        index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        if not self.store.streamed or index.numel() <= INLINE_SAMPLES:
            x = to_unit(self.store.batch(index, size))
            return x if device is None else x.to(device)
        parts = [x for x, _ in self.loader(chunks(index, batch_size), size, device)]
        return torch.cat(parts)
