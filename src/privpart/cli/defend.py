"""`privpart defend`: fine-tune a checkpoint so one cut leaks less; writes a defended checkpoint.

Its parameter options are generated from the defences' declarations (`DEFENCE_PARAMS`);
`privpart audit --defence METHOD` offers the same ones (training knobs as `--defence-*`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from privpart.cli.application import app
from privpart.cli.options import DataDirOpt, DeviceOpt, TrustCodeOpt
from privpart.cli.params import with_params
from privpart.defences import COMMON, DEFENCES, make_defence
from privpart.defences import defend as run_defence
from privpart.device import resolve_device
from privpart.errors import PrivpartError
from privpart.training import read_meta
from privpart.ui import console

Opt = typer.Option
DEFENCE_PARAMS = {name: DEFENCES.get(name).declared() for name in DEFENCES.names()}
TRAINING_KNOBS = tuple(COMMON)  # shared by every defence: `--defence-*` inside `privpart audit`


def check_defence_options(method: str | None, cut: str | None, params: dict[str, Any]) -> None:
    """`privpart audit`'s defence options are complete and valid (before any training)."""
    if method is None:
        if cut or params:
            raise PrivpartError(
                "defence options were given without --defence",
                f"add --defence METHOD ({', '.join(DEFENCES.names())}) or drop them",
            )
        return
    make_defence(method, **params)
    if not cut:
        raise PrivpartError(
            "--defence needs --defence-cut", "name the cut to defend, e.g. --defence-cut features.9"
        )


@app.command()
@with_params(DEFENCE_PARAMS, dest="params")
def defend(
    checkpoint: Annotated[Path, Opt(help="the undefended checkpoint folder")],
    cut: Annotated[str, Opt(help="the cut to defend, e.g. features.9 (see `privpart cuts`)")],
    method: Annotated[str, Opt(help=f"defence: {', '.join(DEFENCES.names())}")],
    out: Annotated[Path, Opt(help="folder for the defended checkpoint")],
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    trust_code: TrustCodeOpt = False,
    params: dict[str, Any] | None = None,
) -> None:
    """Fine-tune CHECKPOINT with a defence at CUT; writes OUT/model.safetensors + meta.json.

    Audit the result with fresh attackers: `privpart audit --checkpoint OUT` (or let the audit
    train it: `privpart audit --checkpoint CHECKPOINT --defence METHOD --defence-cut CUT`).
    """
    params = params or {}
    make_defence(method, **params)  # fail on bad parameters before loading anything
    path = run_defence(
        checkpoint, method, cut, out, params, data_dir=data_dir,
        device=str(resolve_device(device)), trust_code=trust_code,
    )  # fmt: skip
    record = read_meta(path)["defence"]
    base = record.get("base_task_accuracy")
    console.print(
        f"[green]saved[/] {path}: {method} at {record['cut']}, task accuracy "
        f"{record['task_accuracy']:.2%}" + (f" (undefended {base:.2%})" if base is not None else "")
    )
    console.print(f"audit it with fresh attackers: privpart audit --checkpoint {path}")
