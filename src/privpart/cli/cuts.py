"""`privpart cuts`: the legal cut points of a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from privpart.cli.application import app
from privpart.models import ModelSpec, build_model, parse_input_shape
from privpart.partition import Partition
from privpart.ui import console

JSON_KEYS = (
    "name",
    "shape",
    "bytes_per_sample",
    "head_params",
    "tail_params",
    "head_flops",
    "tail_flops",
)


def _human(n: float) -> str:
    for unit in ("", "k", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}P"


@app.command()
def cuts(
    model: Annotated[
        str,
        typer.Argument(
            help="zoo name (vgg16, resnet50, efficientnet_b0, tinycnn) or path/to/file.py:factory"
        ),
    ],
    input: Annotated[str, typer.Option("--input", help="input shape CxHxW")] = "1x32x32",
    classes: Annotated[int, typer.Option(help="number of output classes")] = 10,
    weights: Annotated[Path | None, typer.Option(help="local torchvision-format weights")] = None,
    leaf: Annotated[list[str], typer.Option(help="module (name or class) to keep whole")] = [],  # noqa: B006
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list")] = False,
    interior: Annotated[bool, typer.Option(help="hide the input/output extremes")] = False,
) -> None:
    """List every legal cut: where one tensor carries all state from head to tail."""
    c, h, w = parse_input_shape(input)
    net = build_model(ModelSpec(model, c, classes, (h, w)), weights).eval()
    part = Partition(net, (c, h, w), leaf)
    found = part.interior_cuts if interior else part.cuts
    if as_json:
        rows = [{k: v for k, v in cut.to_dict().items() if k in JSON_KEYS} for cut in found]
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{model}: {len(found)} legal cuts at input {c}x{h}x{w}")
    for col in (
        "#",
        "cut",
        "shape",
        "bytes/sample",
        "head params",
        "tail params",
        "head FLOPs",
        "tail FLOPs",
    ):
        table.add_column(col, justify="left" if col in ("cut", "shape") else "right")
    for i, cut in enumerate(found):
        table.add_row(
            str(i),
            cut.name,
            "x".join(map(str, cut.shape)),
            _human(cut.bytes_per_sample),
            _human(cut.head_params),
            _human(cut.tail_params),
            _human(cut.head_flops),
            _human(cut.tail_flops),
        )
    console.print(table)
