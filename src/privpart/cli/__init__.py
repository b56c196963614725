"""privpart command line: `privpart --help`. Each command lives in its own module."""

from __future__ import annotations

import sys

from privpart.cli import attack as _attack  # noqa: F401  (registers commands)
from privpart.cli import audit as _audit  # noqa: F401
from privpart.cli import cuts as _cuts  # noqa: F401
from privpart.cli import defend as _defend  # noqa: F401
from privpart.cli import serve as _serve  # noqa: F401  (serve, enclave, infer)
from privpart.cli import train as _train  # noqa: F401
from privpart.cli.app import app
from privpart.cli.argv import expand_optional_values
from privpart.errors import PrivpartError
from privpart.ui import console


def main() -> None:
    """Entry point: user-facing errors print what was wrong and what to do, exit code 2."""
    try:
        app(expand_optional_values(sys.argv[1:]))
    except PrivpartError as exc:
        console.print(f"[bold red]error:[/] {exc.message}")
        if exc.hint:
            console.print(f"[yellow]what to do:[/] {exc.hint}")
        sys.exit(2)


__all__ = ["app", "main"]
