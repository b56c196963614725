"""`from_torch`: any torch dataset as a privpart dataset, labels from .targets or one pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from privpart.data import Attribute, TorchStore, from_torch, make_splits
from privpart.errors import PrivpartError


class Pictures(torch.utils.data.Dataset):
    """PIL images (like torchvision's datasets), optionally with .targets and attribute dicts."""

    def __init__(self, n: int, targets: bool, with_attrs: bool = False, offset: int = 0) -> None:
        rng = np.random.default_rng(offset)
        self.pixels = rng.integers(0, 256, (n, 12, 10, 3), dtype=np.uint8)
        self.labels = [int(i % 3) for i in range(n)]
        self.with_attrs = with_attrs
        self.reads = 0
        if targets:
            self.targets = list(self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):  # noqa: ANN204
        self.reads += 1
        img = Image.fromarray(self.pixels[i])
        if self.with_attrs:
            return img, self.labels[i], {"parity": torch.tensor(i % 2)}
        return img, self.labels[i]


def test_targets_are_used_and_images_read_on_demand() -> None:
    data = Pictures(30, targets=True)
    ds = from_torch(data, name="pics", classes=["a", "b", "c"], workers=0)
    assert isinstance(ds.store, TorchStore) and ds.streamed
    assert data.reads == 1  # the probe for channels and size only
    assert ds.classes == ["a", "b", "c"] and ds.labels.tolist() == data.labels
    assert ds.channels == 3 and ds.native_size == (12, 10)
    x = ds.inputs(torch.tensor([4, 7]), (12, 10))
    assert torch.equal(x, torch.from_numpy(data.pixels[[4, 7]]).permute(0, 3, 1, 2) / 255.0)
    assert ds.inputs(torch.tensor([0]), (24, 20)).shape == (1, 3, 24, 20)


def test_labels_and_attributes_from_one_pass_and_a_test_set() -> None:
    ds = from_torch(
        Pictures(24, targets=False, with_attrs=True),
        test=Pictures(12, targets=False, with_attrs=True, offset=1),
        attributes={"size": ["big", "small"] * 18},
        workers=1,
    )
    assert len(ds) == 36 and ds.test_start == 24
    assert ds.classes == ["0", "1", "2"]
    assert ds.attributes["parity"].values.tolist() == [i % 2 for i in range(24)] + [
        i % 2 for i in range(12)
    ]
    assert ds.attributes["size"].classes == ["big", "small"]
    splits = make_splits(ds, seed=0)
    assert (splits.victim >= 24).all() and (splits.aux < 24).all()


def test_normalised_tensors_and_bad_attributes_are_refused() -> None:
    class Normalised(torch.utils.data.Dataset):
        targets = [0, 1]

        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int):  # noqa: ANN204
            return torch.full((3, 4, 4), -1.5), i

    with pytest.raises(PrivpartError, match="outside \\[0, 1\\]"):
        from_torch(Normalised())
    with pytest.raises(PrivpartError, match="3 values for 30 samples"):
        from_torch(Pictures(30, targets=True), attributes={"x": Attribute(torch.zeros(3), [])})
