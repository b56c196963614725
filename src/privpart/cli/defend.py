"""`privpart defend`: fine-tune a checkpoint so one cut leaks less; writes a defended checkpoint.

`defence_params` turns the shared command-line options into a defence's parameters (only the
ones given): `privpart audit --defence METHOD` uses it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from privpart.cli.app import app
from privpart.cli.options import DataDirOpt
from privpart.defences import DEFENCES, make_defence
from privpart.defences import defend as run_defence
from privpart.errors import PrivpartError
from privpart.training import read_meta
from privpart.ui import console

Opt = typer.Option


def defence_params(
    alpha: float | None = None,
    beta: float | None = None,
    sigma: float | None = None,
    private_attribute: str | None = None,
    epochs: int | None = None,
    limit: int | None = None,
    steps: int | None = None,
) -> dict[str, Any]:
    """The options the user gave, as defence parameters (the defence validates them)."""
    given = {
        "alpha": alpha,
        "beta": beta,
        "sigma": sigma,
        "private_attribute": private_attribute,
        "epochs": epochs,
        "limit": limit,
        "steps": steps,
    }
    return {k: v for k, v in given.items() if v is not None}


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
def defend(
    checkpoint: Annotated[Path, Opt(help="the undefended checkpoint folder")],
    cut: Annotated[str, Opt(help="the cut to defend, e.g. features.9 (see `privpart cuts`)")],
    method: Annotated[str, Opt(help=f"defence: {', '.join(DEFENCES.names())}")],
    out: Annotated[Path, Opt(help="folder for the defended checkpoint")],
    alpha: Annotated[
        float | None, Opt(help="adversarial: reconstruction weight; nopeek: dCor weight")
    ] = None,
    beta: Annotated[float | None, Opt(help="adversarial: attribute weight")] = None,
    sigma: Annotated[float | None, Opt(help="noise: std relative to the features' std")] = None,
    private_attribute: Annotated[
        str | None, Opt(help="adversarial: attribute to hide (e.g. class for a group-task model)")
    ] = None,
    epochs: Annotated[int | None, Opt(help="fine-tuning epochs (default 1)")] = None,
    limit: Annotated[int | None, Opt(help="defender's training samples (default 10000)")] = None,
    steps: Annotated[int | None, Opt(help="cap on optimisation steps")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Fine-tune CHECKPOINT with a defence at CUT; writes OUT/model.safetensors + meta.json.

    Audit the result with fresh attackers: `privpart audit --checkpoint OUT` (or let the audit
    train it: `privpart audit --checkpoint CHECKPOINT --defence METHOD --defence-cut CUT`).
    """
    params = defence_params(alpha, beta, sigma, private_attribute, epochs, limit, steps)
    make_defence(method, **params)  # fail on bad parameters before loading anything
    path = run_defence(checkpoint, method, cut, out, params, data_dir=data_dir)
    record = read_meta(path)["defence"]
    base = record.get("base_task_accuracy")
    console.print(
        f"[green]saved[/] {path}: {method} at {record['cut']}, task accuracy "
        f"{record['task_accuracy']:.2%}" + (f" (undefended {base:.2%})" if base is not None else "")
    )
    console.print(f"audit it with fresh attackers: privpart audit --checkpoint {path}")
