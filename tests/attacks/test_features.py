from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from privpart.attacks import (
    AttackerView,
    FeatureSet,
    ThreatModel,
    compute_feature_sets,
    default_attribute,
)
from privpart.attacks.attribute_choice import available_attributes
from privpart.data import Attribute, Dataset, make_splits
from privpart.errors import PrivpartError
from privpart.partition import Partition


def _toy_dataset(n: int = 60) -> Dataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 3
    return Dataset("toy", images, labels, ["a", "b", "c"], "memory",
                   attributes={"class": Attribute(labels, ["a", "b", "c"])})  # fmt: skip


def test_victims_and_aux_never_overlap(tiny_sets: dict[str, FeatureSet]) -> None:
    fs = tiny_sets["block1"]
    assert fs.aux_index is not None and fs.victim_index is not None
    assert not set(fs.aux_index.tolist()) & set(fs.victim_index.tolist())
    assert fs.sizes() == {"aux": 100, "victim": 32}
    train, val = AttackerView.of(fs, ThreatModel.BLACK_BOX_QUERY).aux_split(0.1, seed=0)
    assert sorted(torch.cat([train, val]).tolist()) == list(range(100))  # aux indices only


def test_overlapping_splits_are_refused() -> None:
    ds = _toy_dataset()
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1)).eval()
    part = Partition(model, (1, 8, 8))
    splits = make_splits(ds, seed=0, n_aux=10, n_victim=5)
    bad = replace(splits, victim=torch.cat([splits.victim, splits.aux[:1]]))
    with pytest.raises(PrivpartError, match="both the aux and the victim"):
        compute_feature_sets(part, ds, bad, part.cuts[:1], (8, 8), show_progress=False)


def test_features_equal_the_head_output_even_with_inplace_ops() -> None:
    """One pass collects every cut; an in-place ReLU after a conv must not corrupt the conv's
    recorded output (VGG uses ReLU(inplace=True))."""
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3, padding=1)]
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(256, 3)).eval()
    part = Partition(model, (1, 8, 8))
    ds = _toy_dataset()
    splits = make_splits(ds, seed=0, n_aux=12, n_victim=6)
    sets = compute_feature_sets(part, ds, splits, part.cuts, (8, 8), batch_size=7,
                                show_progress=False)  # fmt: skip
    assert set(sets) == {c.name for c in part.cuts}
    for name, fs in sets.items():
        with torch.no_grad():
            assert torch.allclose(fs.head(fs.aux_inputs), fs.aux_features, atol=1e-6), name
            assert torch.allclose(fs.head(fs.victim_inputs), fs.victim_features, atol=1e-6), name
        assert torch.equal(fs.aux_attributes["class"], ds.labels[splits.aux])
        assert torch.equal(fs.victim_attributes["class"], ds.labels[splits.victim])
    assert (sets["0"].aux_features < 0).any(), "the conv output was overwritten by the ReLU"


def test_default_attributes_per_dataset() -> None:
    # group is a function of class: a class-task model reveals it in every prediction
    assert default_attribute("fashion-mnist", "class") == "brightness"
    assert default_attribute("fashion-mnist", "class", ["class", "group"]) == "class"
    assert default_attribute("fashion-mnist", "group") == "class"
    assert default_attribute("ton-iot:/x.csv", "class") == "service"
    assert default_attribute("idx:/somewhere", "class") == "class"
    assert default_attribute("ton-iot:/x.csv", "class", ["class", "proto"]) == "proto"
    attrs = available_attributes(_toy_dataset())
    assert set(attrs) == {"class", "brightness"}
    assert set(attrs["brightness"].values.tolist()) == {0, 1, 2}
