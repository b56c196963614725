"""Every command that loads a checkpoint refuses one whose architecture is a Python file (and
never imports the file) unless `--trust-code`; with it, the command runs the file and works.

`serve`, `enclave` and `infer` are covered in tests/runtime/test_trust_code.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from privpart.cli import app, main
from tests.helpers import code_marker

runner = CliRunner()

# command -> its arguments after `--checkpoint DIR` (cheap settings: each really runs)
COMMANDS: dict[str, list[str]] = {
    "audit": ["--cuts", "block2", "--attacks", "decoder", "--budget-scale", "0.005",
              "--device", "cpu"],
    "attack": ["--cut", "block2", "--attack", "decoder", "--steps", "2", "--device", "cpu"],
    "defend": ["--cut", "block2", "--method", "nopeek", "--steps", "2", "--limit", "32",
               "--batch-size", "16", "--device", "cpu"],
    "profile": ["--cuts", "block2", "--repeats", "3", "--json"],
}  # fmt: skip


def argv(command: str, ckpt: Path, out: Path) -> list[str]:
    extra = [] if command == "profile" else ["--out", str(out)]
    return [command, "--checkpoint", str(ckpt), *COMMANDS[command], *extra]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_code_checkpoint_is_refused_with_exit_2_and_never_imported(
    code_ckpt: Path, tmp_path: Path, command: str, monkeypatch, capsys
) -> None:
    code_marker(code_ckpt).unlink(missing_ok=True)
    monkeypatch.setattr(sys, "argv", ["privpart", *argv(command, code_ckpt, tmp_path / "out")])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2
    said = capsys.readouterr()
    flat = "".join((said.err + said.out).split())  # the console wraps long lines anywhere

    def told(text: str) -> bool:
        return "".join(text.split()) in flat

    assert told("names its architecture as Python code")
    assert told(str((code_ckpt.parent / "net.py").resolve())) and told("build()")  # what runs
    assert told("--trust-code")
    assert not code_marker(code_ckpt).exists()  # the file was never imported


@pytest.mark.parametrize("command", list(COMMANDS))
def test_with_trust_code_the_command_runs_the_file_and_works(
    code_ckpt: Path, tmp_path: Path, command: str
) -> None:
    code_marker(code_ckpt).unlink(missing_ok=True)
    out = tmp_path / "out"
    result = runner.invoke(app, [*argv(command, code_ckpt, out), "--trust-code"])
    assert result.exit_code == 0, result.output
    assert code_marker(code_ckpt).exists()
    code_marker(code_ckpt).unlink()
    written = {
        "audit": out / "results.json",
        "attack": out / "result.json",
        "defend": out / "meta.json",
    }
    if command in written:
        assert written[command].is_file()
    else:
        assert "block2" in json.loads(result.stdout)["cuts"]
