"""`privpart train` and `privpart import` on an image folder with an attributes file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from privpart.cli import app
from privpart.data.synthetic import write_image_folder
from privpart.errors import PrivpartError
from privpart.models import ModelSpec, build_model

runner = CliRunner()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("f"), 60, classes=3, size=16, fmt="png")


def test_train_on_an_attribute_as_the_task(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "ck"
    result = runner.invoke(app, [
        "train", "tinycnn", "--dataset", f"imagefolder:{folder}@16", "--attributes",
        str(folder / "attributes.csv"), "--task", "tint", "--device", "cpu", "--epochs", "2",
        "--out", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["task"] == "tint" and meta["classes"] == ["cool", "warm"]
    assert meta["attributes_file"] == str((folder / "attributes.csv").resolve())
    assert meta["train_config"]["device"] == "cpu" and meta["spec"]["in_channels"] == 3
    assert "splits: target-train" in result.output


def test_import_cli_and_clear_errors(folder: Path, tmp_path: Path) -> None:
    weights = tmp_path / "tiny.safetensors"
    model = build_model(ModelSpec("tinycnn", 3, 3, (16, 16)))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    out = tmp_path / "imp"
    result = runner.invoke(app, [
        "import", "tinycnn", "--weights", str(weights), "--dataset", f"imagefolder:{folder}@16",
        "--normalize", "none", "--device", "cpu", "--out", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["spec"]["input_size"] == [16, 16] and meta["trained"] is False
    assert meta["classes"] == ["c0", "c1", "c2"] and "normalization" not in meta["spec"]
    assert "warning" in result.output and "--allow-weak-target" in result.output  # untrained
    # (main() turns these into exit code 2 with the hint: tests/cli/test_cli.py)
    too_many = runner.invoke(
        app, ["train", "tinycnn", "--dataset", f"imagefolder:{folder}@16", "--train-limit", "5000"]
    )
    err = too_many.exception  # the library's words: the parameter of train_to_checkpoint
    assert isinstance(err, PrivpartError) and "need 5000" in err.message
    assert "`train_limit`" in err.hint and err.param == "train_limit"
    if not torch.cuda.is_available():
        no_gpu = runner.invoke(app, ["train", "tinycnn", "--device", "cuda"]).exception
        assert isinstance(no_gpu, PrivpartError) and "no CUDA device" in no_gpu.message


@pytest.mark.parametrize("spelling", ["--train-limit", "--limit"])
def test_train_limit_error_reads_as_the_flag(
    folder: Path, spelling: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`train --train-limit` (as in `audit`); the old `--limit` still works, with a warning."""
    from privpart.cli import main

    monkeypatch.setattr("sys.argv", ["privpart", "train", "tinycnn", "--dataset",
                                     f"imagefolder:{folder}@16", spelling, "5000"])  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        main()
    said = " ".join("".join(capsys.readouterr()).split())
    assert stop.value.code == 2 and "need 5000" in said and "lower --train-limit," in said
    assert ("--limit is now --train-limit" in said) == (spelling == "--limit")
