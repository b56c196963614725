"""privpart command line: `privpart --help`. Each command lives in its own module."""

from __future__ import annotations

import sys

from privpart.runtime.threads import quiet_idle_threads

# The runtime's processes take turns on shared cores: stop idle OpenMP threads from spinning
# (must happen before torch is imported below; see privpart.runtime.threads).
RUNTIME_COMMANDS = {"serve", "enclave", "infer"}
if RUNTIME_COMMANDS & set(sys.argv[1:2]):
    quiet_idle_threads()

from privpart.cli import attack as _attack  # noqa: E402, F401  (registers commands)
from privpart.cli import audit as _audit  # noqa: E402, F401
from privpart.cli import cuts as _cuts  # noqa: E402, F401
from privpart.cli import defend as _defend  # noqa: E402, F401
from privpart.cli import importer as _importer  # noqa: E402, F401
from privpart.cli import serve as _serve  # noqa: E402, F401  (serve, enclave, infer)
from privpart.cli import train as _train  # noqa: E402, F401
from privpart.cli import verify as _verify  # noqa: E402, F401  (verify-quote)
from privpart.cli.app import app  # noqa: E402
from privpart.cli.argv import expand_optional_values  # noqa: E402
from privpart.errors import PrivpartError  # noqa: E402
from privpart.ui import console  # noqa: E402


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
