"""`privpart import`: a checkpoint of a model as it is (a weights file + the dataset to audit it
on), without training: its own classifier and input size, its measured accuracy."""

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
from privpart.cli.train import warn_if_weak
from privpart.training import import_to_checkpoint, read_meta
from privpart.ui import console


@app.command("import")
def import_model(
    model: ModelArg,
    weights: Annotated[
        Path,
        typer.Option(
            help="the model's weights: torchvision-format state dict (.safetensors, or "
            ".pth read with torch's weights-only loader)"
        ),
    ],
    dataset: DatasetOpt = "fashion-mnist",
    out: Annotated[Path, typer.Option(help="checkpoint folder to write")] = Path("runs/imported"),
    data_dir: DataDirOpt = None,
    attributes: AttributesOpt = None,
    task: TaskOpt = None,
    input_size: Annotated[
        int | None,
        typer.Option(
            help="the model's input size (default: the dataset's @SIZE, else 224 for "
            "zoo architectures)",
            min=1,
        ),
    ] = None,
    normalize: Annotated[str, typer.Option(help=NORMALIZE_HELP)] = "auto",
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    aux: Annotated[int | None, typer.Option(help="attacker-auxiliary samples held out")] = None,
    victim: Annotated[int | None, typer.Option(help="victim samples held out")] = None,
) -> None:
    """Write OUT/model.safetensors + meta.json for MODEL with WEIGHTS as they are (no training);
    measures test accuracy on the dataset's target-test split. Audit it with
    `privpart audit --checkpoint OUT`."""
    path = import_to_checkpoint(
        model,
        weights,
        dataset,
        out,
        data_dir=data_dir,
        seed=seed,
        task=task,
        n_aux=aux,
        n_victim=victim,
        input_size=(input_size, input_size) if input_size else None,
        normalize=normalize,
        device=device,
        attributes=attributes,
    )
    meta = read_meta(path)
    console.print(f"[green]saved[/] {path}; audit it with privpart audit --checkpoint {path}")
    warn_if_weak(meta, "fine-tune with privpart train --weights")
