"""`from_torch`: any `torch.utils.data.Dataset` as a privpart `Dataset`, read lazily.

Items must be `(image, label[, attributes])`: the image a PIL image, a tensor (C, H, W) in
[0, 1] or uint8, or a numpy array; `attributes` (optional) a dict {name: value}. Labels come from
the dataset's `.targets` when it has them (torchvision's datasets do), else from one pass over
the items (through worker processes; images are decoded and dropped). Images themselves are read
only when a stage asks for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader

from privpart.data.dataset import Attribute, Dataset
from privpart.data.loading import default_workers
from privpart.data.store import TorchStore
from privpart.errors import PrivpartError


class _LabelsOnly(torch.utils.data.Dataset):
    """Items reduced to (label, attributes) inside the worker, so images never travel."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, dict]:
        item = self.dataset[i]
        if not isinstance(item, tuple | list) or len(item) < 2:
            raise TypeError(f"item {i} is not (image, label[, attributes])")
        extra = item[2] if len(item) > 2 and isinstance(item[2], Mapping) else {}
        plain = {k: v.item() if isinstance(v, Tensor) else v for k, v in extra.items()}
        return _as_int(item[1], i), plain


def _as_int(label: Any, i: int) -> int:
    if isinstance(label, Tensor):
        if label.numel() != 1:
            raise PrivpartError(
                f"item {i} has a label of shape {tuple(label.shape)}",
                "privpart needs one class index per item",
            )
        label = label.item()
    try:
        return int(label)
    except (TypeError, ValueError):
        raise PrivpartError(
            f"item {i} has label {label!r}, not a class index", "make labels integers 0..K-1"
        ) from None


def _read_labels(dataset: Any, workers: int | None) -> tuple[list[int], list[dict]]:
    """One pass over the items for labels (and attribute dicts)."""
    workers = default_workers() if workers is None else workers
    loader = DataLoader(
        _LabelsOnly(dataset),
        batch_size=None,
        num_workers=workers,
        generator=torch.Generator(),
    )
    labels, extras = [], []
    try:
        for label, extra in loader:
            labels.append(label)
            extras.append(extra)
    except TypeError as exc:
        raise PrivpartError(
            f"cannot read labels: {exc}", "make the dataset yield (image, label[, attributes])"
        ) from exc
    return labels, extras


def _attribute(name: str, values: Attribute | Sequence | Tensor, n: int) -> Attribute:
    if isinstance(values, Attribute):
        attr = values
    else:
        raw = values.tolist() if isinstance(values, Tensor) else list(values)
        if raw and all(isinstance(v, int) for v in raw):
            classes = [str(c) for c in range(max(raw) + 1)]
            attr = Attribute(torch.tensor(raw, dtype=torch.long), classes)
        else:
            text = [str(v) for v in raw]
            classes = sorted(set(text))
            code = {c: k for k, c in enumerate(classes)}
            attr = Attribute(torch.tensor([code[v] for v in text], dtype=torch.long), classes)
    if int(attr.values.shape[0]) != n:
        raise PrivpartError(
            f"attribute {name!r} has {attr.values.shape[0]} values for {n} samples",
            "give one value per sample, in the dataset's order",
        )
    return attr


def from_torch(
    dataset: Any,
    name: str = "torch-dataset",
    classes: Sequence[str] | None = None,
    attributes: Mapping[str, Attribute | Sequence | Tensor] | None = None,
    test: Any = None,
    size: tuple[int, int] | None = None,
    workers: int | None = None,
) -> Dataset:
    """A privpart `Dataset` over `dataset` (see the module docstring).

    `test`: an official test set (same item format) appended after `dataset`, so target-test and
    victims come from it; `classes`: names of the label values (default `dataset.classes`, else
    "0".."K-1"); `attributes`: per-sample private attributes, {name: values in item order};
    `size`: the default input size (default: the first image's).
    """
    parts = [dataset] if test is None else [dataset, test]
    combined = parts[0] if test is None else ConcatDataset(parts)
    try:
        n = len(combined)
    except TypeError:
        raise PrivpartError(
            "the dataset has no length", "pass a map-style torch Dataset (with __len__)"
        ) from None
    if n == 0:
        raise PrivpartError("the dataset is empty", "give a dataset with samples")
    store = TorchStore(combined, size)  # probes the first item: bad images fail here, early
    extras: list[dict] = []
    if all(getattr(p, "targets", None) is not None for p in parts):
        labels = [_as_int(v, i) for p in parts for i, v in enumerate(list(p.targets))]
    else:
        labels, extras = _read_labels(combined, workers)
    if len(labels) != n:
        raise PrivpartError(
            f"{name}: .targets has {len(labels)} labels for {n} items",
            "make .targets hold one label per item",
        )
    label_tensor = torch.tensor(labels, dtype=torch.long)
    if int(label_tensor.min()) < 0:
        raise PrivpartError(f"{name}: negative labels", "make labels class indices 0..K-1")
    names = list(classes or getattr(dataset, "classes", None) or [])
    if not names:
        names = [str(k) for k in range(int(label_tensor.max()) + 1)]
    if int(label_tensor.max()) >= len(names):
        raise PrivpartError(
            f"{name}: label {int(label_tensor.max())} but only {len(names)} class names",
            "give classes= with one name per label value",
        )
    attrs = {"class": Attribute(label_tensor, [str(c) for c in names])}
    if extras and any(extras):
        keys = sorted({k for e in extras for k in e})
        for key in keys:
            missing = sum(key not in e for e in extras)
            if missing:
                raise PrivpartError(
                    f"{name}: attribute {key!r} is missing from {missing} items",
                    "give every item the same attributes",
                )
            attrs[key] = _attribute(key, [e[key] for e in extras], n)
    for key, values in (attributes or {}).items():
        attrs[key] = _attribute(key, values, n)
    return Dataset(
        name=name,
        images=store,
        labels=label_tensor,
        classes=[str(c) for c in names],
        source=f"{type(dataset).__module__}.{type(dataset).__name__}",
        test_start=None if test is None else len(dataset),
        attributes=attrs,
    )
