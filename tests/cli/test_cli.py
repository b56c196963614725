from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from privpart.cli import app

runner = CliRunner()


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "cuts" in result.output and "train" in result.output


def test_cuts_json_keys() -> None:
    result = runner.invoke(app, ["cuts", "tinycnn", "--input", "1x32x32", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[0]["name"] == "input"
    assert set(rows[0]) == {
        "name",
        "shape",
        "bytes_per_sample",
        "head_params",
        "tail_params",
        "head_flops",
        "tail_flops",
    }


def test_train_writes_checkpoint(idx_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ck"
    result = runner.invoke(
        app,
        ["train", "tinycnn", "--dataset", f"idx:{idx_dir}", "--train-limit", "100",
         "--out", str(out)],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["spec"]["arch"] == "tinycnn" and meta["split_sizes"]["target_train"] == 100
    assert (out / "model.safetensors").is_file()


def test_user_errors_exit_2_with_advice(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from privpart.cli import main; main()", "cuts", "nosuchnet"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "unknown model 'nosuchnet'" in proc.stderr and "what to do" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_library_error_reads_in_the_command_lines_flags(tmp_path: Path) -> None:
    """The library says `attack_steps`; the command line says --attack-steps."""
    proc = subprocess.run(
        [sys.executable, "-c", "from privpart.cli import main; main()", "audit", "tinycnn",
         "--attack-steps", "0", "--out", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "--attack-steps must be positive" in proc.stderr and "attack_steps" not in proc.stderr
    assert "--attack-steps 500" in proc.stderr  # `attack_steps=500` in the hint


def test_flags_spell_python_parameters() -> None:
    from privpart.cli.flags import speak

    assert speak("`train=False` needs `weights`", "train") == "--no-train needs `weights`"
    assert speak("set `n_aux` and `allow_weak_target=True`") == "set --aux and --allow-weak-target"
    assert speak("`device=cuda:1` or `vgg16`") == "--device cuda:1 or `vgg16`"
