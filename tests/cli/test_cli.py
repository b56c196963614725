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
        ["train", "tinycnn", "--dataset", f"idx:{idx_dir}", "--limit", "100", "--out", str(out)],
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
