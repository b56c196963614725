"""Options whose value may be left out (`--ray [ADDRESS]`), which Typer's parser cannot express.

Before Typer parses, a bare `--ray` (last on the line, or followed by another option) becomes
`--ray=local`. As in Click, a word right after it is taken as its value, so
`privpart audit --ray tinycnn` reads `tinycnn` as the address, and the address check then says to
put positional arguments first or to write `--ray=ADDRESS`.
"""

from __future__ import annotations

OPTIONAL_VALUES: dict[str, str] = {"--ray": "local"}


def expand_optional_values(args: list[str]) -> list[str]:
    """`args` with each bare optional-value option given its implied value."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        implied = OPTIONAL_VALUES.get(arg)
        following = args[i + 1] if i + 1 < len(args) else None
        if implied is not None and (following is None or following.startswith("-")):
            arg = f"{arg}={implied}"
        out.append(arg)
    return out
