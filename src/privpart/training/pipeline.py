"""Dataset + spec -> checkpoint: trained here (`privpart train`, the audit) or imported as it is
from a weights file (`privpart import`, an audit with `train=False`)."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from privpart.data import Dataset, DataSplits, load_dataset, make_splits
from privpart.device import describe, resolve_device
from privpart.errors import PrivpartError, PrivpartValueError
from privpart.models import ModelSpec, build_model, parse_normalization
from privpart.models.pretrained import check_complete, weights_shape
from privpart.models.user import is_user_arch
from privpart.models.weights import load_pretrained
from privpart.training.checkpoint import file_sha256, save_checkpoint
from privpart.training.quality import check_target
from privpart.training.train import TrainConfig, evaluate_accuracy, train_target
from privpart.ui import console
from privpart.version import __version__

# Learning rates that converge within one or two CPU epochs (AdamW, one-cycle).
DEFAULT_LR = {"vgg16": 4e-4, "resnet50": 1e-3, "efficientnet_b0": 2e-3, "tinycnn": 3e-3}
PRETRAINED_SIZE = (224, 224)  # torchvision's ImageNet weights are trained at 224 x 224


def _dataset(
    dataset: str, data_dir: Path | None, attributes: Path | None, task: str | None
) -> Dataset:
    ds = load_dataset(dataset, data_dir, attributes)
    return ds.with_task(task) if task and task != "class" else ds


def _meta(
    ds: Dataset,
    dataset: str,
    attributes: Path | None,
    task: str | None,
    spec: ModelSpec,
    splits: DataSplits,
    seed: int,
    device: torch.device,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """meta.json fields every checkpoint carries (how to re-create its data and splits)."""
    check = check_target(float(extra["test_accuracy"]), ds.labels[splits.target_test])
    return {
        "dataset": ds.name,
        "dataset_spec": dataset,
        "attributes_file": str(Path(attributes).resolve()) if attributes else None,
        "data_source": ds.source,
        "task": task or "class",
        "input_shape": list(spec.input_shape),
        "split_seed": seed,
        "split_sizes": splits.sizes(),
        "target_check": check.to_dict(),
        "device": describe(device),
        "privpart_version": __version__,
        "torch_version": torch.__version__,
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
        **extra,
    }


def _print_splits(splits: DataSplits, show: bool) -> None:
    if show:
        console.print(f"splits: {splits.describe()} (seeded; sizes rule: privpart.data.splits)")


def train_to_checkpoint(
    arch: str,
    dataset: str,
    out: Path,
    data_dir: Path | None = None,
    train_limit: int | None = None,
    epochs: int = 1,
    seed: int = 0,
    task: str | None = None,
    lr: float | None = None,
    batch_size: int = 64,
    weights: Path | None = None,
    show_progress: bool = True,
    n_aux: int | None = None,
    n_victim: int | None = None,
    precision: str = "auto",
    minutes: float | None = None,
    device: str = "auto",
    attributes: Path | None = None,
    normalize: str = "auto",
    max_train: int | None = None,
    bn_batches: int | None = None,
) -> Path:
    """Train `arch` on `dataset` (the target-train split: `train_limit` samples exactly, else
    what the split rule leaves, at most `max_train`) and save it to `out`."""
    dev = resolve_device(device)
    ds = _dataset(dataset, data_dir, attributes, task)
    splits = make_splits(
        ds, seed=seed, n_train=train_limit, n_aux=n_aux, n_victim=n_victim, max_train=max_train,
        params={"target_train": "train_limit"},
    )  # fmt: skip
    _print_splits(splits, show_progress)
    size = ds.default_input_size(4 if arch == "tinycnn" else 32)
    norm = parse_normalization(normalize, ds.channels, pretrained=weights is not None)
    spec = ModelSpec(arch, ds.channels, len(ds.classes), size, norm)
    torch.manual_seed(seed)
    model = build_model(spec, weights)
    cfg = TrainConfig(
        epochs=epochs,
        lr=lr or DEFAULT_LR.get(arch, 1e-3),
        seed=seed,
        batch_size=batch_size,
        precision=precision,
        minutes=minutes,
        device=str(dev),
    )
    if bn_batches is not None:
        cfg.bn_batches = bn_batches
    report = train_target(model, ds, splits, size, cfg, show_progress)
    meta = _meta(ds, dataset, attributes, task, spec, splits, seed, dev, {
        "classes": ds.classes,
        "trained": True,
        "weights_start": str(weights) if weights else None,
        "train_config": asdict(cfg),
        "test_accuracy": report.test_accuracy,
        "train_accuracy": report.train_accuracy,
        "bn_recalibration_samples": report.bn_samples,
        "train_seconds": report.train_seconds,
        "samples_seen": report.samples_seen,
        "final_lr": report.final_lr,
    })  # fmt: skip
    return save_checkpoint(out, model.cpu(), spec, meta)


def output_classes(arch: str, num_classes: int, ds: Dataset) -> list[str]:
    """Names of the model's outputs: the dataset's classes when they line up one to one, else
    torchvision's ImageNet categories for a 1000-output zoo model, else indices."""
    if len(ds.classes) == num_classes:
        return list(ds.classes)
    if num_classes == 1000 and not is_user_arch(arch):
        import torchvision

        try:
            return list(torchvision.models.get_model_weights(arch).DEFAULT.meta["categories"])
        except (ValueError, KeyError, AttributeError):
            pass
    return [str(k) for k in range(num_classes)]


def import_to_checkpoint(
    arch: str,
    weights: Path,
    dataset: str,
    out: Path,
    data_dir: Path | None = None,
    seed: int = 0,
    task: str | None = None,
    n_aux: int | None = None,
    n_victim: int | None = None,
    max_train: int | None = None,
    input_size: tuple[int, int] | None = None,
    normalize: str = "auto",
    device: str = "auto",
    attributes: Path | None = None,
    show_progress: bool = True,
) -> Path:
    """A checkpoint of the model in `weights` as it is: its own classifier (and so its own
    number of outputs), its input size (`input_size`, else the dataset's `@SIZE`, else 224 for
    torchvision architectures), its accuracy measured on the target-test split. No training.

    Dataset label k is read as the model's output k (an ImageNet folder's sorted synsets are
    torchvision's class order); a dataset with more classes than outputs is refused.
    """
    dev = resolve_device(device)
    ds = _dataset(dataset, data_dir, attributes, task)
    channels, num_classes = weights_shape(arch, Path(weights))
    if channels != ds.channels:
        raise PrivpartError(
            f"the weights take {channels}-channel inputs, {ds.name} has {ds.channels} channel(s)",
            "use a dataset with the model's channels (image folders are read as RGB unless "
            "every image is grey)",
        )
    if len(ds.classes) > num_classes:
        raise PrivpartValueError(
            f"the model has {num_classes} outputs, the dataset {len(ds.classes)} classes",
            "train from these `weights` instead (training fits the classifier to the dataset's "
            "classes)",
            param="weights",
        )
    splits = make_splits(ds, seed=seed, n_aux=n_aux, n_victim=n_victim, max_train=max_train)
    _print_splits(splits, show_progress)
    if input_size is None:
        size_given = "@" in dataset.partition(":")[2]
        input_size = ds.native_size if size_given or is_user_arch(arch) else PRETRAINED_SIZE
    norm = parse_normalization(normalize, channels, pretrained=True)
    spec = ModelSpec(arch, channels, num_classes, tuple(input_size), norm)
    model = build_model(spec)
    notes = load_pretrained(model, Path(weights))
    check_complete(model, notes, Path(weights))
    model.to(dev)
    accuracy = evaluate_accuracy(model, ds, splits.target_test, spec.input_size, device=dev)
    meta = _meta(ds, dataset, attributes, task, spec, splits, seed, dev, {
        "classes": output_classes(arch, num_classes, ds),
        "dataset_classes": ds.classes,
        "trained": False,
        "weights_file": str(Path(weights).resolve()),
        "weights_file_sha256": file_sha256(Path(weights)),
        "test_accuracy": accuracy,
        "train_seconds": 0.0,
    })  # fmt: skip
    path = save_checkpoint(out, model.cpu(), spec, meta)
    if show_progress:
        check = check_target(accuracy, ds.labels[splits.target_test])
        console.print(
            f"imported {arch} ({num_classes} outputs, {'x'.join(map(str, spec.input_shape))}, "
            f"normalisation {norm.name if norm else 'none'}): {check.describe()}"
        )
    return path
