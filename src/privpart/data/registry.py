"""Dataset registry: `name` or `scheme:argument` -> loader(argument, data_dir) -> Dataset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from privpart.data.dataset import Dataset
from privpart.registry import Registry

Loader = Callable[[str, Path | None], Dataset]
DATASETS: Registry[Loader] = Registry("dataset")


def load_dataset(spec: str, data_dir: Path | None = None) -> Dataset:
    """`fashion-mnist`, `idx:DIR`, `imagefolder:DIR`, `csv:FILE`, `ton-iot:FILE`."""
    scheme, _, arg = spec.partition(":")
    return DATASETS.get(scheme)(arg, data_dir)
