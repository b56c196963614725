"""Datasets (registry), deterministic splits, and their mapping to model inputs."""

from privpart.data import sources as _sources  # noqa: F401  (fills the registry)
from privpart.data import tabular as _tabular  # noqa: F401
from privpart.data.dataset import Attribute, Dataset
from privpart.data.registry import DATASETS, load_dataset
from privpart.data.splits import DataSplits, make_splits, splits_from_meta
from privpart.data.torch_adapter import from_torch

__all__ = [
    "DATASETS",
    "Attribute",
    "DataSplits",
    "Dataset",
    "from_torch",
    "load_dataset",
    "make_splits",
    "splits_from_meta",
]
