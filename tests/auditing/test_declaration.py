"""The audit's options are declared once (privpart.auditing.config): every field has a
`privpart audit` option and every option a field, spelt as privpart.cli.flags says."""

from __future__ import annotations

from dataclasses import fields

import typer

from privpart.auditing.config import AuditConfig
from privpart.cli import load_commands
from privpart.cli.defend import DEFENCE_PARAMS
from privpart.cli.flags import AUDIT_RUN_OPTIONS, LIBRARY_ONLY, flag
from privpart.cli.params import union
from privpart.metrics import limit_options
from privpart.profiling import ProfileConfig
from privpart.selection import Constraints


def audit_options() -> set[str]:
    """The flag of each `privpart audit` option (`--train` for --train/--no-train) and the name
    of each argument, as click sees them."""
    group = typer.main.get_command(load_commands("audit"))
    command = group.commands["audit"]  # type: ignore[attr-defined]
    return {p.opts[0] if p.opts[0].startswith("--") else p.name for p in command.params} - {
        "--help"
    }


def declared_flags() -> dict[str, set[str]]:
    """field -> the flags that set it (a field may need several, e.g. one limit per metric)."""
    own = [f.name for f in fields(AuditConfig) if f.name not in ("profile", "constraints")]
    names = [*own, *(f.name for f in fields(ProfileConfig)), *(f.name for f in fields(Constraints))]
    out = {n: {flag(n)} for n in names if n not in LIBRARY_ONLY}
    out["model"] = {"model"}  # the command's argument
    out["limits"] = {"--max-" + o.name.replace("_", "-") for o in limit_options().values()}
    out["defence_params"] = set()
    return out


def test_every_field_has_an_option_and_every_option_a_field() -> None:
    options = audit_options()
    declared = declared_flags()
    missing = {f: sorted(fl - options) for f, fl in declared.items() if fl - options}
    assert not missing, f"fields without a `privpart audit` option: {missing}"
    covered = set().union(*declared.values()) | set(AUDIT_RUN_OPTIONS)
    generated = {o for o in options if o.removeprefix("--").removeprefix("defence-")
                 .replace("-", "_") in union(DEFENCE_PARAMS)}  # fmt: skip  # defence_params
    orphans = sorted(options - covered - generated)
    assert not orphans, f"`privpart audit` options with no field of AuditConfig: {orphans}"
