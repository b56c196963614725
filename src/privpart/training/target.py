"""The model under audit and everything its cuts are judged on, loaded in one place.

`Target.load(checkpoint)` is the one load path (checkpoint -> dataset with its task -> the
checkpoint's exact splits -> partition) that the audit, `privpart attack` and the defences
share; `Target.from_module(model, dataset, input_shape)` builds the same object from a model
and data already in memory (the library API), with no file involved.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as st_save
from torch import nn

from privpart.data import Dataset, DataSplits, dataset_from_meta, make_splits, splits_from_meta
from privpart.errors import PrivpartError
from privpart.partition import Partition
from privpart.training.checkpoint import load_checkpoint
from privpart.training.train import evaluate_accuracy
from privpart.version import __version__


def state_sha256(model: nn.Module) -> str:
    """A stable hash of a model's weights (its safetensors serialisation): keys caches."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return hashlib.sha256(st_save(state)).hexdigest()


@dataclass
class Target:
    model: nn.Module
    meta: dict[str, Any]  # meta.json of the checkpoint (or its equivalent for a module)
    dataset: Dataset  # task labels already swapped in
    splits: DataSplits
    partition: Partition
    checkpoint: Path | None = None
    _accuracy: float | None = field(default=None, repr=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["input_shape"])

    @property
    def input_size(self) -> tuple[int, int]:
        return (int(self.input_shape[1]), int(self.input_shape[2]))

    @property
    def task(self) -> str:
        return str(self.meta.get("task", "class"))

    @property
    def arch(self) -> str:
        return str(self.meta["spec"]["arch"])

    def test_accuracy(self, device: torch.device | None = None) -> float:
        """Accuracy on the target-test split (from meta.json when the checkpoint recorded it;
        else measured, streamed on `device`)."""
        if self._accuracy is None:
            recorded = self.meta.get("test_accuracy")
            self._accuracy = (
                float(recorded)
                if recorded is not None
                else evaluate_accuracy(
                    self.model,
                    self.dataset,
                    self.splits.target_test,
                    self.input_size,
                    device=device or torch.device("cpu"),
                )
            )
            self.meta["test_accuracy"] = self._accuracy
        return self._accuracy

    @classmethod
    def load(
        cls,
        checkpoint: Path,
        data_dir: Path | None = None,
        expect_arch: str | None = None,
        leaf_modules: Iterable[str] = (),
        trust_code: bool = False,
    ) -> Target:
        """A checkpoint with its dataset, task and the exact splits it was trained with. A
        checkpoint whose architecture is a Python file runs it only with `trust_code`."""
        model, meta = load_checkpoint(
            Path(checkpoint), expect_arch=expect_arch, trust_code=trust_code
        )
        ds = dataset_from_meta(meta, data_dir)  # its attributes file, its task label
        splits = splits_from_meta(ds, meta)
        part = Partition(model, tuple(meta["input_shape"]), leaf_modules)
        return cls(model, meta, ds, splits, part, Path(checkpoint))

    @classmethod
    def from_module(
        cls,
        model: nn.Module,
        dataset: Dataset,
        input_shape: tuple[int, ...],
        *,
        task: str | None = None,
        seed: int = 0,
        n_aux: int | None = None,
        n_victim: int | None = None,
        n_test: int | None = 2000,
        leaf_modules: Iterable[str] = (),
    ) -> Target:
        """A model already trained (or pretrained), and its data, from memory."""
        if len(input_shape) != 3:
            raise PrivpartError(
                f"input_shape {tuple(input_shape)} is not (C, H, W)",
                "give the shape one sample takes, e.g. (1, 32, 32) or (3, 224, 224)",
            )
        ds = dataset.with_task(task) if task and task != "class" else dataset
        splits = make_splits(ds, seed=seed, n_test=n_test, n_aux=n_aux, n_victim=n_victim)
        model = model.eval()
        part = Partition(model, tuple(input_shape), leaf_modules)
        c, h, w = (int(v) for v in input_shape)
        meta: dict[str, Any] = {
            "spec": {
                "arch": f"{type(model).__module__}.{type(model).__qualname__}",
                "in_channels": c,
                "num_classes": len(ds.classes),
                "input_size": [h, w],
            },
            "dataset": ds.name,
            "dataset_spec": ds.name,
            "data_source": ds.source,
            "task": task or "class",
            "classes": list(ds.classes),
            "input_shape": [c, h, w],
            "split_seed": seed,
            "split_sizes": splits.sizes(),
            "weights_sha256": state_sha256(model),
            "privpart_version": __version__,
            "torch_version": torch.__version__,
            "origin": "in-memory module",
        }
        return cls(model, meta, ds, splits, part, None)
