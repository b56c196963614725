from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from privpart.cli import app
from privpart.errors import PrivpartError

runner = CliRunner()


def _attack(ckpt: Path, out: Path, *extra: str):  # noqa: ANN202
    return runner.invoke(app, ["attack", "--checkpoint", str(ckpt), "--out", str(out), *extra])


def test_attack_writes_result_json_and_grid(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _attack(tiny_checkpoint, out, "--cut", "block2", "--attack", "decoder",
                     "--steps", "5")  # fmt: skip
    assert result.exit_code == 0, result.output
    d = json.loads((out / "result.json").read_text())
    assert {"attack", "threat_model", "cut", "metrics", "config", "seconds", "grid"} <= set(d)
    assert (d["attack"], d["threat_model"], d["cut"]) == ("decoder", "black-box query", "block2")
    assert {"ssim", "psnr", "reid"} <= set(d["metrics"])
    ssim = d["metrics"]["ssim"]
    assert {"aux_mean", "task_floor"} <= set(ssim["baselines"]) and ssim["spec"]["limit"]
    assert ssim["interval"]["low"] <= ssim["value"] <= ssim["interval"]["high"]
    assert d["config"]["budget"] == {"seconds": None, "steps": 5} and d["grid"] == "grid.png"
    assert d["config"]["fit"]["steps"] == 5
    assert (out / "grid.png").stat().st_size > 1000


def test_attribute_attack_via_cli(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "attr"
    result = _attack(tiny_checkpoint, out, "--cut", "block1", "--attack", "attribute",
                     "--budget", "1", "--attribute", "brightness")  # fmt: skip
    assert result.exit_code == 0, result.output
    d = json.loads((out / "result.json").read_text())
    assert d["config"]["attribute"] == "brightness" and d["config"]["fit"]["seconds"] == 1.0
    baselines = d["metrics"]["accuracy"]["baselines"]
    assert {"majority", "chance"} <= set(baselines)
    assert 0 < baselines["task_floor"] <= 1  # brightness guessed from the class label
    assert (out / "grid.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cut", "nowhere", "--attack", "decoder"], "'nowhere' is not a legal cut"),
        (["--cut", "block1", "--attack", "telepathy"], "unknown attack 'telepathy'"),
        (["--cut", "block1", "--attack", "decoder", "--model", "vgg16"], "holds a tinycnn"),
        (["--cut", "block1", "--attack", "decoder", "--budget", "-3"], "budget `seconds` is -3"),
        (["--cut", "block1", "--attack", "decoder", "--steps", "0"], "budget `steps` is 0"),
        (["--cut", "block1", "--attack", "attribute", "--attribute", "shoe"], "attribute 'shoe'"),
        (["--cut", "block1", "--attack", "decoder", "--attribute", "class"], "does not apply"),
        (["--cut", "block1", "--attack", "decoder", "--loss", "huber"], "one of l1, mse"),
    ],
)
def test_bad_arguments_give_clear_errors(
    tiny_checkpoint: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = _attack(tiny_checkpoint, tmp_path / "x", *args)
    assert isinstance(result.exception, PrivpartError), result.output
    assert message in str(result.exception) and result.exception.hint
    assert not (tmp_path / "x" / "result.json").exists()


def test_cli_exits_2_with_advice(tiny_checkpoint: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from privpart.cli import main; main()", "attack",
         "--checkpoint", str(tiny_checkpoint), "--cut", "block9", "--attack", "decoder",
         "--out", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "not a legal cut" in proc.stderr and "what to do" in proc.stderr
    assert "Traceback" not in proc.stderr
