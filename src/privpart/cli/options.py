"""Option types shared by several commands, so the same flag reads the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ModelArg = Annotated[str, typer.Argument(help="zoo name or path/to/file.py:factory")]
DatasetOpt = Annotated[
    str,
    typer.Option(
        help="fashion-mnist, idx:DIR, imagefolder:DIR[@SIZE] (read lazily), csv:FILE or "
        "ton-iot:FILE"
    ),
]
DataDirOpt = Annotated[Path | None, typer.Option(help="folder holding the dataset")]
TaskOpt = Annotated[
    str | None,
    typer.Option(help="attribute to use as the task label, e.g. group for fashion-mnist"),
]
SeedOpt = Annotated[int, typer.Option(help="seed for splits, initialisation and order")]
DeviceOpt = Annotated[
    str,
    typer.Option(
        help="where models, features, attacks and training run: auto (CUDA when present, else "
        "CPU), cpu, cuda or cuda:N. Latency is still profiled with the head on the CPU"
    ),
]
AttributesOpt = Annotated[
    Path | None,
    typer.Option(
        help="per-image attributes for an image folder: CSV with a file column and one column "
        "per attribute, or CelebA's list_attr_celeba.txt; usable as --task or --attribute"
    ),
]
NORMALIZE_HELP = (
    "input normalisation inside the model: auto (imagenet when --weights are given to a "
    "3-channel model, else none), none, imagenet, or MEAN,MEAN,MEAN/STD,STD,STD"
)
TrustCodeOpt = Annotated[
    bool,
    typer.Option(
        "--trust-code",
        help="allow a checkpoint whose architecture is a Python file (path/to/file.py:factory): "
        "that file is imported and run. Without it such a checkpoint is refused before the file "
        "is read",
    ),
]
