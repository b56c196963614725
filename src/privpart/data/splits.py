"""Deterministic, seeded, disjoint splits: target-train / target-test / attacker-aux / victim.

Disjoint by construction: each split is a different slice of one seeded permutation. With an
official test set, target-train and aux come from the training side, target-test and victim from
the test side, so the victims are never data the target model was trained on. Without one, a
seeded 20% of the data is the test side.

Default sizes (any size left as None), so they fit small datasets and stay bounded on large ones:

    victim        min(256, test side / 3)
    target-test   min(2,000, what the victims leave of the test side)
    aux           min(2,000, training side / 3)
    target-train  what aux leaves of the training side, capped at `max_train` if given

A size given explicitly is taken exactly (target-test: at most what is left), or the split fails
with a `PrivpartValueError` naming the parameter that sets it (`params`: the caller's own).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from privpart.data.dataset import Dataset
from privpart.errors import PrivpartValueError

AUX_CAP, VICTIM_CAP, TEST_CAP = 2000, 256, 2000
SIDE_FRACTION = 3  # aux and victims take at most a third of their side
MIN_AUX, MIN_VICTIM = 4, 1
SPLIT_NAMES = ("target_train", "target_test", "aux", "victim")
# The parameter of make_splits behind each size; callers that take a size under another name
# pass their own (`params=`), so an error names what the caller can change.
PARAMETERS = {"target_train": "n_train", "target_test": "n_test", "aux": "n_aux",
              "victim": "n_victim"}  # fmt: skip


@dataclass(frozen=True)
class DataSplits:
    target_train: torch.Tensor
    target_test: torch.Tensor
    aux: torch.Tensor
    victim: torch.Tensor
    seed: int

    def sizes(self) -> dict[str, int]:
        return {k: int(getattr(self, k).numel()) for k in SPLIT_NAMES}

    def describe(self) -> str:
        """`target-train 2,667 / target-test 744 / aux 1,333 / victim 256` for the console."""
        return " / ".join(f"{k.replace('_', '-')} {v:,}" for k, v in self.sizes().items())


def _take(
    pool: torch.Tensor, start: int, n: int, what: str, params: Mapping[str, str], n_all: int
) -> torch.Tensor:
    left = pool.numel() - start
    if n > left:
        raise PrivpartValueError(
            f"not enough samples for the {what.replace('_', '-')} split: need {n}, {left} left "
            f"(the dataset has {n_all})",
            f"lower `{params[what]}`, leave it unset to size it from the data, or use more data",
            param=params[what],
        )
    return pool[start : start + n]


def make_splits(
    ds: Dataset,
    seed: int = 0,
    n_train: int | None = None,
    n_test: int | None = None,
    n_aux: int | None = None,
    n_victim: int | None = None,
    max_train: int | None = None,
    params: Mapping[str, str] | None = None,
) -> DataSplits:
    """Split `ds` by the module docstring's rule; `params` names the caller's parameter behind
    each size where it is not make_splits' own (`{"target_train": "train_limit"}`), for errors."""
    names = {**PARAMETERS, **(params or {})}
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
        n_aux = min(AUX_CAP, train_pool.numel() // SIDE_FRACTION)
    if n_victim is None:
        n_victim = min(VICTIM_CAP, test_pool.numel() // SIDE_FRACTION)
    if n_aux < MIN_AUX or n_victim < MIN_VICTIM:
        raise PrivpartValueError(
            f"{n} samples are too few: the rule leaves {n_aux} aux and {n_victim} victim "
            f"samples (at least {MIN_AUX} and {MIN_VICTIM} needed)",
            f"use more data, or set `{names['aux']}` and `{names['victim']}` explicitly",
            param=names["aux"] if n_aux < MIN_AUX else names["victim"],
        )
    aux = _take(train_pool, 0, n_aux, "aux", names, n)
    left_train = train_pool.numel() - n_aux
    if n_train is None:
        n_train = left_train if max_train is None else min(max_train, left_train)
    train = _take(train_pool, n_aux, n_train, "target_train", names, n)
    victim = _take(test_pool, 0, n_victim, "victim", names, n)
    left_test = test_pool.numel() - n_victim
    n_test = min(TEST_CAP if n_test is None else n_test, left_test)
    test = _take(test_pool, n_victim, n_test, "target_test", names, n)
    if train.numel() < 1 or test.numel() < 1:
        raise PrivpartValueError(
            f"{n} samples are too few: target-train {train.numel()}, target-test {test.numel()}",
            "use more data",
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
