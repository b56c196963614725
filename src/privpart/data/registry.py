"""Dataset registry: `name` or `scheme:argument` -> loader(argument, data_dir) -> Dataset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from privpart.data.dataset import Dataset
from privpart.registry import Registry

Loader = Callable[[str, Path | None], Dataset]
DATASETS: Registry[Loader] = Registry("dataset")


def load_dataset(
    spec: str, data_dir: Path | None = None, attributes: Path | None = None
) -> Dataset:
    """`fashion-mnist`, `idx:DIR`, `imagefolder:DIR[@SIZE]`, `csv:FILE`, `ton-iot:FILE`;
    `attributes`: a per-image attributes file (`privpart.data.attribute_file`)."""
    scheme, _, arg = spec.partition(":")
    ds = DATASETS.get(scheme)(arg, data_dir)
    if attributes is not None:
        from privpart.data.attribute_file import with_attribute_file

        ds = with_attribute_file(ds, Path(attributes))
    return ds


def dataset_from_meta(meta: dict[str, Any], data_dir: Path | None = None) -> Dataset:
    """The dataset a checkpoint was made from (its attributes file, task label swapped in)."""
    attributes = meta.get("attributes_file")
    ds = load_dataset(
        meta.get("dataset_spec", meta.get("dataset", "")),
        data_dir,
        Path(attributes) if attributes else None,
    )
    task = meta.get("task") or "class"
    return ds if task == "class" else ds.with_task(task)
