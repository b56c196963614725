"""Any `torch.utils.data.Dataset` of `(image, label[, attributes])` as a privpart `Dataset`.

For notebooks: `privpart.audit(model, torchvision.datasets.MNIST(...))` needs no file. Images
may be float tensors in [0, 1], uint8 tensors, or PIL images; labels ints (or 0-d tensors);
attributes an optional dict `name -> int` per item (per-image private attributes). The items
are read once into memory: for image folders too large for that, use `imagefolder:DIR`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset as TorchDataset

from privpart.data.dataset import Attribute, Dataset
from privpart.errors import PrivpartError


def _image(x: Any, i: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        try:
            from torchvision.transforms.functional import pil_to_tensor

            x = pil_to_tensor(x)
        except (TypeError, AttributeError) as exc:
            raise PrivpartError(
                f"item {i}: the image is a {type(x).__name__}, not a tensor or a PIL image",
                "give the dataset a transform that returns a CxHxW tensor (e.g. ToTensor())",
            ) from exc
    if x.dim() == 2:
        x = x[None]
    if x.dim() != 3:
        raise PrivpartError(
            f"item {i}: the image has shape {tuple(x.shape)}, not CxHxW",
            "return images as CxHxW tensors",
        )
    return x


def from_torch(
    dataset: TorchDataset,
    name: str = "dataset",
    classes: Sequence[str] | None = None,
    attribute_classes: Mapping[str, Sequence[str]] | None = None,
    test_start: int | None = None,
) -> Dataset:
    """Read `dataset` once into a privpart `Dataset` (see the module docstring).

    `classes` names the labels (default: the dataset's `classes`, else "0", "1", ...);
    `attribute_classes` names each attribute's values (default "0", "1", ...).
    """
    try:
        n = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise PrivpartError(
            "the dataset has no length", "pass a map-style torch Dataset (with __len__)"
        ) from None
    if n == 0:
        raise PrivpartError("the dataset is empty", "pass a dataset with samples")
    images, labels, attrs = [], [], []
    for i in range(n):
        item = dataset[i]
        if not isinstance(item, tuple | list) or len(item) not in (2, 3):
            raise PrivpartError(
                f"item {i} is not (image, label) or (image, label, attributes)",
                "make __getitem__ return (image, label[, {name: value}])",
            )
        images.append(_image(item[0], i))
        labels.append(int(item[1]))
        attrs.append(dict(item[2]) if len(item) == 3 else {})
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) != 1:
        raise PrivpartError(
            f"images have different shapes: {sorted(shapes)[:3]}",
            "resize them to one size in the dataset's transform",
        )
    stacked = torch.stack(images)
    if stacked.dtype != torch.uint8:
        stacked = stacked.float()
        if float(stacked.min()) < 0 or float(stacked.max()) > 1:
            raise PrivpartError(
                "float images are outside [0, 1] (normalised?)",
                "return images in [0, 1]: privpart attacks and scores in image space; put the "
                "normalisation inside the model",
            )
    label_t = torch.tensor(labels, dtype=torch.long)
    names = list(classes or getattr(dataset, "classes", None) or
                 [str(i) for i in range(int(label_t.max()) + 1)])  # fmt: skip
    attributes = {"class": Attribute(label_t, names)}
    for key in sorted({k for a in attrs for k in a}):
        if any(key not in a for a in attrs):
            raise PrivpartError(
                f"attribute {key!r} is missing on some items", "give every item every attribute"
            )
        values = torch.tensor([int(a[key]) for a in attrs], dtype=torch.long)
        given = (attribute_classes or {}).get(key)
        attributes[key] = Attribute(
            values, list(given) if given else [str(v) for v in range(int(values.max()) + 1)]
        )
    return Dataset(
        name=name,
        images=stacked,
        labels=label_t,
        classes=names,
        source=f"torch dataset {type(dataset).__name__}",
        test_start=test_start,
        attributes=attributes,
    )
