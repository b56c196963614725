"""The CLI imports only the invoked command's module; the map from commands to modules is whole."""

from __future__ import annotations

import subprocess
import sys

import typer

from privpart.cli import COMMANDS, load_commands


def registered(app: typer.Typer) -> set[str]:
    return {c.name or c.callback.__name__ for c in app.registered_commands}


def test_every_registered_command_is_in_the_map() -> None:
    assert registered(load_commands()) == set(COMMANDS)


def run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120).stdout  # fmt: skip


def test_verify_quote_starts_without_torch_and_serve_without_the_attack_code() -> None:
    probe = (
        "import sys; sys.argv = ['privpart', {cmd!r}, '--help']\n"
        "from privpart.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('LOADED', 'torch' in sys.modules, 'privpart.attacks' in sys.modules)\n"
    )
    out = run(probe.format(cmd="verify-quote"))
    assert "--collateral" in out and "LOADED False False" in out
    out = run(probe.format(cmd="serve"))
    assert "--checkpoint" in out and "LOADED True False" in out


def test_help_lists_every_command() -> None:
    out = run("import sys; sys.argv = ['privpart', '--help']\nfrom privpart.cli import main\n"
              "try:\n    main()\nexcept SystemExit:\n    pass\n")  # fmt: skip
    for name in COMMANDS:
        assert name in out
