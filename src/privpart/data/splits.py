"""Deterministic, seeded, disjoint splits: target-train / target-test / attacker-aux / victim.

Disjoint by construction: each split is a different slice of one seeded permutation. With an
official test set, target-train and aux come from the training side, target-test and victim from
the test side, so the victims are never data the target model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from privpart.data.dataset import Dataset
from privpart.errors import PrivpartError


@dataclass(frozen=True)
class DataSplits:
    target_train: torch.Tensor
    target_test: torch.Tensor
    aux: torch.Tensor
    victim: torch.Tensor
    seed: int

    def sizes(self) -> dict[str, int]:
        return {
            k: int(getattr(self, k).numel())
            for k in ("target_train", "target_test", "aux", "victim")
        }


def _take(pool: torch.Tensor, start: int, n: int, what: str, available: str) -> torch.Tensor:
    if start + n > pool.numel():
        raise PrivpartError(
            f"not enough samples for the {what} split: need {n}, {pool.numel() - start} left",
            f"lower the {available} sizes or use more data",
        )
    return pool[start : start + n]


def make_splits(
    ds: Dataset,
    seed: int = 0,
    n_train: int | None = None,
    n_test: int | None = 2000,
    n_aux: int | None = None,
    n_victim: int | None = None,
) -> DataSplits:
    """Split `ds`; `n_train=None` gives target-train everything the other splits leave.

    `n_aux=None` takes min(2000, a third of the training side); `n_victim=None` min(256, a third
    of the test side).
    """
    g = torch.Generator().manual_seed(seed)
    n = len(ds)
    if ds.test_start is not None:
        train_pool = torch.randperm(ds.test_start, generator=g)
        test_pool = ds.test_start + torch.randperm(n - ds.test_start, generator=g)
    else:
        perm = torch.randperm(n, generator=g)
        n_test_side = max(n // 5, (n_victim or 0) + 1)  # 20% test side, no official test set
        test_pool, train_pool = perm[:n_test_side], perm[n_test_side:]
    if n_aux is None:
        n_aux = min(2000, train_pool.numel() // 3)
    if n_victim is None:
        n_victim = min(256, test_pool.numel() // 3)
    aux = _take(train_pool, 0, n_aux, "aux", "aux")
    left_train = train_pool.numel() - n_aux
    train = _take(train_pool, n_aux, left_train if n_train is None else n_train, "train", "--limit")
    victim = _take(test_pool, 0, n_victim, "victim", "victim")
    left_test = test_pool.numel() - n_victim
    test = _take(
        test_pool, n_victim, left_test if n_test is None else min(n_test, left_test), "test", "test"
    )
    return DataSplits(target_train=train, target_test=test, aux=aux, victim=victim, seed=seed)


def splits_from_meta(ds: Dataset, meta: dict) -> DataSplits:
    """Re-create the exact splits a checkpoint was trained with (seed and sizes in meta.json)."""
    sizes = meta["split_sizes"]
    return make_splits(
        ds,
        seed=int(meta["split_seed"]),
        n_train=int(sizes["target_train"]),
        n_test=int(sizes["target_test"]),
        n_aux=int(sizes["aux"]),
        n_victim=int(sizes["victim"]),
    )
