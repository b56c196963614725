"""`privpart train`: train a target model and write a safetensors checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from privpart.cli.app import app
from privpart.cli.options import DataDirOpt, DatasetOpt, ModelArg, SeedOpt, TaskOpt
from privpart.training import read_meta, train_to_checkpoint
from privpart.ui import console


@app.command()
def train(
    model: ModelArg,
    dataset: DatasetOpt = "fashion-mnist",
    out: Annotated[Path, typer.Option(help="checkpoint folder to write")] = Path("runs/target"),
    data_dir: DataDirOpt = None,
    limit: Annotated[int | None, typer.Option(help="train on this many samples")] = None,
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
            help="auto (bf16 where the CPU has bf16 units, else fp32), fp32, or bf16: mixed "
            "precision, weights stay fp32"
        ),
    ] = "auto",
    task: TaskOpt = None,
    weights: Annotated[
        Path | None, typer.Option(help="local pretrained weights to start from")
    ] = None,
    seed: SeedOpt = 0,
    aux: Annotated[
        int | None,
        typer.Option(
            help="attacker-auxiliary samples held out (default min(2000, 1/3 of training side))"
        ),
    ] = None,
    victim: Annotated[
        int | None,
        typer.Option(
            help="victim samples held out for scoring attacks (default min(256, 1/3 of test side))"
        ),
    ] = None,
) -> None:
    """Train a target model; writes OUT/model.safetensors and OUT/meta.json."""
    path = train_to_checkpoint(
        model,
        dataset,
        out,
        data_dir=data_dir,
        limit=limit,
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
    )
    meta = read_meta(path)
    console.print(
        f"[green]saved[/] {path} — test accuracy {meta['test_accuracy']:.2%}, "
        f"{meta['train_seconds'] / 60:.1f} min on {meta['machine']}"
    )
