"""`privpart attack`: run one leakage attack at one cut of a checkpoint; write result.json and
grid.png (victim originals above what the attacker recovered). The attack's parameters are
options generated from its declaration (`--lr`, `--victims`, ...)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from privpart import api
from privpart.attacks import ATTACKS, Budget, make_attack
from privpart.attacks.grid import save_grid
from privpart.cli.application import app
from privpart.cli.options import DataDirOpt, TrustCodeOpt
from privpart.cli.params import with_params
from privpart.errors import PrivpartError
from privpart.report.render import figure
from privpart.training.target import Target
from privpart.ui import console

ATTACK_PARAMS = {name: ATTACKS.get(name).params for name in ATTACKS.names()}


@app.command()
@with_params(ATTACK_PARAMS, dest="params")
def attack(
    checkpoint: Annotated[Path, typer.Option(help="checkpoint folder (privpart train --out)")],
    cut: Annotated[str, typer.Option(help="cut name, see `privpart cuts`")],
    attack: Annotated[str, typer.Option(help=f"one of: {', '.join(ATTACKS.names())}")],
    out: Annotated[Path, typer.Option(help="folder for result.json and grid.png")],
    budget: Annotated[
        float | None, typer.Option(help="wall-clock seconds for the attack (default per attack)")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="optimisation steps (exact, no clock)")] = None,
    data_dir: DataDirOpt = None,
    model: Annotated[
        str | None, typer.Option(help="expected architecture: refuse a checkpoint of another")
    ] = None,
    seed: Annotated[int, typer.Option(help="attack seed")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N]")] = "auto",
    trust_code: TrustCodeOpt = False,
    params: dict[str, Any] | None = None,
) -> None:
    """Attack one cut: fit on the attacker's aux data, score on held-out victims."""
    # Cheap checks first: the attack, its parameters and budget, the checkpoint, the cut.
    cls = ATTACKS.get(attack)
    params = params or {}
    foreign = sorted(set(params) - set(cls.params))
    if foreign:
        raise PrivpartError(
            f"--{foreign[0].replace('_', '-')} does not apply to --attack {attack}",
            f"{attack}'s parameters: {', '.join(sorted(cls.params)) or 'none'}",
        )
    the_budget = Budget(seconds=budget, steps=steps).validate()
    make_attack(attack, the_budget, seed, **params)
    target = Target.load(checkpoint, data_dir, expect_arch=model, trust_code=trust_code)
    the_cut = target.partition.cut(cut)
    sizes = f"{target.splits.aux.numel()} aux, {target.splits.victim.numel()} victims"
    console.print(f"[bold]{cls.name}[/] ({cls.threat_model.value}) at cut [bold]{the_cut.name}[/] "
                  f"{'x'.join(map(str, the_cut.shape))}: {sizes}")  # fmt: skip
    result = api.attack(
        target, cut=cut, attack=attack, budget=the_budget, seed=seed, device=device,
        **{"show_progress": True, **params},
    )  # fmt: skip
    result.config["checkpoint"] = str(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    grid = save_grid(result, out / "grid.png")
    result.grid = None if grid is None else grid.name
    (out / "result.json").write_text(json.dumps(result.to_dict(), indent=2))
    for m in result.metrics.values():
        base = ", ".join(f"{b.label} {m.baselines[b.name]:{m.spec.fmt}}"
                         for b in m.spec.baselines if b.name in m.baselines)  # fmt: skip
        shown = f"  [dim]({escape(base)})[/]" if base else ""
        console.print(f"  {m.spec.label}: {figure(m)}{shown}")
    console.print(f"[green]wrote[/] {out / 'result.json'}" + (f" and {grid}" if grid else "")
                  + f" in {result.seconds:.1f} s")  # fmt: skip
