"""Dataset + spec -> trained checkpoint: the step `privpart train` and the audit share."""

from __future__ import annotations

import platform
from dataclasses import asdict
from pathlib import Path

import torch

from privpart.data import load_dataset, make_splits
from privpart.models import ModelSpec, build_model
from privpart.training.checkpoint import save_checkpoint
from privpart.training.train import TrainConfig, train_target
from privpart.version import __version__

# Learning rates that converge within one or two CPU epochs (AdamW, one-cycle).
DEFAULT_LR = {"vgg16": 4e-4, "resnet50": 1e-3, "efficientnet_b0": 2e-3, "tinycnn": 3e-3}


def train_to_checkpoint(
    arch: str,
    dataset: str,
    out: Path,
    data_dir: Path | None = None,
    limit: int | None = None,
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
) -> Path:
    """Train `arch` on `dataset` (the target-train split, `limit` samples) and save it to `out`."""
    ds = load_dataset(dataset, data_dir)
    if task:
        ds = ds.with_task(task)
    splits = make_splits(ds, seed=seed, n_train=limit, n_aux=n_aux, n_victim=n_victim)
    size = ds.default_input_size(4 if arch == "tinycnn" else 32)
    spec = ModelSpec(arch, ds.channels, len(ds.classes), size)
    torch.manual_seed(seed)
    model = build_model(spec, weights)
    cfg = TrainConfig(
        epochs=epochs,
        lr=lr or DEFAULT_LR.get(arch, 1e-3),
        seed=seed,
        batch_size=batch_size,
        precision=precision,
        minutes=minutes,
    )
    report = train_target(model, ds, splits, size, cfg, show_progress)
    meta = {
        "dataset": ds.name,
        "dataset_spec": dataset,
        "data_source": ds.source,
        "task": task or "class",
        "classes": ds.classes,
        "input_shape": list(spec.input_shape),
        "split_seed": seed,
        "split_sizes": splits.sizes(),
        "train_config": asdict(cfg),
        "test_accuracy": report.test_accuracy,
        "train_seconds": report.train_seconds,
        "samples_seen": report.samples_seen,
        "final_lr": report.final_lr,
        "privpart_version": __version__,
        "torch_version": torch.__version__,
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
    }
    return save_checkpoint(out, model, spec, meta)
