"""Datasets (registry), deterministic splits, and their mapping to model inputs."""

from privpart.data import sources as _sources  # noqa: F401  (fills the registry)
from privpart.data import tabular as _tabular  # noqa: F401
from privpart.data.adapter import from_torch
from privpart.data.attribute_file import read_attribute_table, with_attribute_file
from privpart.data.dataset import Attribute, Dataset
from privpart.data.loading import BatchLoader
from privpart.data.registry import DATASETS, dataset_from_meta, load_dataset
from privpart.data.splits import DataSplits, make_splits, splits_from_meta
from privpart.data.store import FolderStore, ImageStore, TensorStore, TorchStore, to_unit

__all__ = [
    "DATASETS",
    "Attribute",
    "BatchLoader",
    "DataSplits",
    "Dataset",
    "FolderStore",
    "ImageStore",
    "TensorStore",
    "TorchStore",
    "dataset_from_meta",
    "from_torch",
    "load_dataset",
    "make_splits",
    "read_attribute_table",
    "splits_from_meta",
    "to_unit",
    "with_attribute_file",
]
