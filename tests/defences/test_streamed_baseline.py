"""The adversarial defence's reconstruction baseline is computed streaming (224-px training sets
never sit in memory at once) and equals the in-memory definition."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from privpart.data import load_dataset, make_splits
from privpart.defences.adversarial import conditional_l1, streamed_conditional_l1


def test_streamed_baseline_equals_the_in_memory_one(idx_dir: Path) -> None:
    ds = load_dataset(f"idx:{idx_dir}")
    index = make_splits(ds, seed=0).target_train
    ctx = SimpleNamespace(ds=ds, train_index=index, input_size=(32, 32))
    expected = conditional_l1(ds.inputs(index, (32, 32)), ds.labels[index], len(ds.classes))
    assert streamed_conditional_l1(ctx, batch=37) == pytest.approx(expected, rel=1e-5)
