"""`privpart train`: train a target model and write a safetensors checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from privpart.cli.application import app
from privpart.cli.options import (
    NORMALIZE_HELP,
    AttributesOpt,
    DataDirOpt,
    DatasetOpt,
    DeviceOpt,
    ModelArg,
    SeedOpt,
    TaskOpt,
)
from privpart.errors import PrivpartValueError
from privpart.training import read_meta, train_to_checkpoint
from privpart.ui import console


@app.command()
def train(
    model: ModelArg,
    dataset: DatasetOpt = "fashion-mnist",
    out: Annotated[Path, typer.Option(help="checkpoint folder to write")] = Path("runs/target"),
    data_dir: DataDirOpt = None,
    train_limit: Annotated[
        int | None,
        typer.Option(help="train on exactly this many samples (default: all the splits leave)"),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 1,
    minutes: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            help="train for this many minutes instead of --epochs (the learning-rate schedule "
            "follows the clock, so the model ends annealed however fast the machine is)",
        ),
    ] = None,
    lr: Annotated[float | None, typer.Option(help="peak learning rate (default per model)")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    precision: Annotated[
        str,
        typer.Option(
            help="auto (CUDA: bf16, or fp16 without bf16 units; CPU: bf16 where it has bf16 "
            "units, else fp32), fp32, bf16 or fp16 (CUDA): mixed precision, weights stay fp32"
        ),
    ] = "auto",
    task: TaskOpt = None,
    attributes: AttributesOpt = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="local torchvision-format weights to fine-tune from (the classifier is "
            "re-sized to the dataset's classes; to keep it, use privpart import)"
        ),
    ] = None,
    normalize: Annotated[str, typer.Option(help=NORMALIZE_HELP)] = "auto",
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    aux: Annotated[
        int | None,
        typer.Option(
            help="attacker-auxiliary samples held out (default min(2000, 1/3 of the training side))"
        ),
    ] = None,
    victim: Annotated[
        int | None,
        typer.Option(
            help="victim samples held out for scoring attacks (default min(256, 1/3 of the test "
            "side))"
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(hidden=True, help="deprecated spelling of --train-limit")
    ] = None,
) -> None:
    """Train a target model; writes OUT/model.safetensors and OUT/meta.json."""
    train_limit = _train_limit(train_limit, limit)
    path = train_to_checkpoint(
        model,
        dataset,
        out,
        data_dir=data_dir,
        train_limit=train_limit,
        epochs=epochs,
        seed=seed,
        task=task,
        lr=lr,
        batch_size=batch_size,
        weights=weights,
        n_aux=aux,
        n_victim=victim,
        precision=precision,
        minutes=minutes,
        device=device,
        attributes=attributes,
        normalize=normalize,
    )
    meta = read_meta(path)
    console.print(
        f"[green]saved[/] {path} — test accuracy {meta['test_accuracy']:.2%}, "
        f"{meta['train_seconds'] / 60:.1f} min on {meta['device']}"
    )
    warn_if_weak(meta, "--epochs, --minutes or --train-limit")


def _train_limit(train_limit: int | None, limit: int | None) -> int | None:
    """--train-limit, as `privpart audit` spells it; the old `--limit` still works, with a
    warning, so scripts written for earlier versions keep running."""
    if limit is None:
        return train_limit
    if train_limit is not None and train_limit != limit:
        raise PrivpartValueError(
            f"--limit {limit} and --train-limit {train_limit} disagree",
            "give only --train-limit (--limit is its old spelling)",
        )
    console.print("[yellow]warning:[/] --limit is now --train-limit (as in privpart audit)")
    return limit


def warn_if_weak(meta: dict, more: str) -> None:
    """Say so when the checkpoint is near chance (the audit would refuse to judge it)."""
    from privpart.training import TargetCheck

    check = TargetCheck(**{k: v for k, v in meta["target_check"].items() if k != "weak"})
    if check.weak:
        console.print(
            f"[bold yellow]warning:[/] {check.describe()}. `privpart audit` will refuse this "
            f"target (unless --allow-weak-target): train longer or on more data ({more}), or "
            "check that the labels match the images"
        )
