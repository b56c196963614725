from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from privpart.errors import PrivpartError
from privpart.training import load_checkpoint, read_meta


def test_checkpoint_round_trip(tiny_checkpoint: Path, monkeypatch) -> None:
    def refuse(*a, **k):
        raise AssertionError("checkpoints must never be unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    model, meta = load_checkpoint(tiny_checkpoint, expect_arch="tinycnn")
    for key in (
        "spec",
        "input_shape",
        "classes",
        "dataset",
        "split_seed",
        "test_accuracy",
        "train_seconds",
        "weights_sha256",
    ):
        assert key in meta
    assert meta["test_accuracy"] > 0.5, "the synthetic task is easy"
    model2, _ = load_checkpoint(tiny_checkpoint)
    x = torch.rand(3, *meta["input_shape"])
    assert torch.equal(model(x), model2(x))


def test_checkpoint_of_other_architecture(tiny_checkpoint: Path) -> None:
    with pytest.raises(PrivpartError, match="holds a tinycnn checkpoint, not vgg16"):
        load_checkpoint(tiny_checkpoint, expect_arch="vgg16")


def test_weights_that_do_not_fit(tiny_checkpoint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(tiny_checkpoint, bad)
    meta = read_meta(bad)
    meta["spec"]["num_classes"] = 7
    (bad / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(PrivpartError, match="does not fit architecture"):
        load_checkpoint(bad)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(PrivpartError, match="not a privpart checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / "meta.json").write_text("{")
    with pytest.raises(PrivpartError, match="corrupt"):
        load_checkpoint(tmp_path)


def test_a_checkpoint_naming_a_python_file_loads_only_with_trust_code(code_ckpt: Path) -> None:
    """The one rule, in the one load path every command and the library use."""
    from privpart.training.target import Target
    from tests.helpers import code_marker

    marker = code_marker(code_ckpt)
    marker.unlink(missing_ok=True)
    net = (code_ckpt.parent / "net.py").resolve()
    for load in (load_checkpoint, Target.load):
        with pytest.raises(PrivpartError) as err:
            load(code_ckpt)
        assert f"import and run {net} and call its build()" in err.value.message
        assert "`trust_code=True`" in err.value.hint and "--" not in err.value.hint
        assert isinstance(err.value, ValueError) and err.value.param == "trust_code"
        assert not marker.exists()
    model, meta = load_checkpoint(code_ckpt, trust_code=True)
    assert marker.exists() and meta["spec"]["arch"] == f"{net}:build"
    assert model(torch.zeros(1, *meta["input_shape"])).shape == (1, 10)
    marker.unlink()
