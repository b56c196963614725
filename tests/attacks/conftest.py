from __future__ import annotations

from pathlib import Path

import pytest

from privpart.attacks import FeatureSet, compute_feature_sets
from privpart.data import load_dataset, splits_from_meta
from privpart.partition import Partition
from privpart.training import load_checkpoint

TINY_CUTS = ["input", "block1", "block3", "fc"]


@pytest.fixture(scope="session")
def tiny_sets(tiny_checkpoint: Path) -> dict[str, FeatureSet]:
    """Features of the tiny checkpoint's aux (100) and victims (32) at a few cuts."""
    model, meta = load_checkpoint(tiny_checkpoint)
    ds = load_dataset(meta["dataset_spec"])
    part = Partition(model, tuple(meta["input_shape"]))
    return compute_feature_sets(part, ds, splits_from_meta(ds, meta),
                                [part.cut(n) for n in TINY_CUTS], tuple(meta["input_shape"][1:]),
                                show_progress=False)  # fmt: skip
