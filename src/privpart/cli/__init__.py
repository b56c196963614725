"""privpart command line: `privpart --help`. Each command lives in its own module.

`privpart COMMAND ...` imports only COMMAND's module: `verify-quote` needs no torch, and the
runtime's `serve` / `enclave` / `infer` do not load the attack and audit code (seconds of
start-up per process on a 2-core machine). `--help`, an unknown command and
`from privpart.cli import app` register every command.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

from privpart.runtime.openmp_spin import quiet_idle_threads

if TYPE_CHECKING:
    import typer

# The runtime's processes take turns on shared cores: stop idle OpenMP threads from spinning
# (must happen before torch is imported below; see privpart.runtime.openmp_spin).
RUNTIME_COMMANDS = {"serve", "enclave", "infer"}
if RUNTIME_COMMANDS & set(sys.argv[1:2]):
    quiet_idle_threads()

# command name -> the module under privpart.cli that registers it (the order of `--help`)
COMMANDS: dict[str, str] = {
    "cuts": "cuts",
    "train": "train",
    "import": "importer",
    "attack": "attack",
    "audit": "audit",
    "profile": "audit",
    "report": "audit",
    "defend": "defend",
    "serve": "serve",
    "enclave": "serve",
    "infer": "serve",
    "verify-quote": "verify",
}


def load_commands(command: str | None = None) -> typer.Typer:
    """The Typer app with `command`'s module registered, or every module when `command` is None
    or not a command (so `--help` and "no such command" list them all)."""
    from privpart.cli.application import app

    names = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in names:
        importlib.import_module(f"privpart.cli.{name}")
    return app


def main() -> None:
    """Entry point: user-facing errors print what was wrong and what to do, exit code 2."""
    from rich.markup import escape

    from privpart.cli.argv import expand_optional_values
    from privpart.cli.flags import spoken
    from privpart.errors import PrivpartError
    from privpart.ui import console

    argv = expand_optional_values(sys.argv[1:])
    app = load_commands(argv[0] if argv else None)
    try:
        app(argv)
    except PrivpartError as exc:
        message, hint = spoken(exc)  # the library's parameter names as this CLI's flags
        console.print(f"[bold red]error:[/] {escape(message)}")
        if hint:
            console.print(f"[yellow]what to do:[/] {escape(hint)}")
        sys.exit(2)


def __getattr__(name: str) -> object:
    if name == "app":  # the whole CLI, e.g. for typer.testing.CliRunner
        return load_commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["COMMANDS", "app", "load_commands", "main"]
