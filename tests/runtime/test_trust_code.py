"""A checkpoint whose architecture is a Python file is code, not data: serving refuses it (and
never imports the file) unless the operator passes --trust-code."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from privpart.cli import app
from privpart.cli.flags import spoken
from privpart.errors import PrivpartError
from privpart.models import ModelSpec
from privpart.runtime.enclave import EnclaveConfig, PlatformKeys
from privpart.runtime.enclave import worker as W
from privpart.runtime.enclave.process import ProcessBackend
from privpart.runtime.head import split_checkpoint
from privpart.training import save_checkpoint

MODEL_FILE = """
from pathlib import Path

from privpart.models import ModelSpec, build_model

Path(__file__).with_name("imported.flag").touch()  # what a hostile file could do instead


def build(in_channels=1, num_classes=10):
    return build_model(ModelSpec("tinycnn", in_channels, num_classes, (28, 28)))
"""


@pytest.fixture(scope="module")
def code_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("user-model")
    (folder / "net.py").write_text(MODEL_FILE)
    spec = ModelSpec(f"{folder / 'net.py'}:build", 1, 10, (28, 28))
    torch.manual_seed(0)
    from privpart.models import build_model

    model = build_model(ModelSpec("tinycnn", 1, 10, (28, 28)))
    ckpt = save_checkpoint(folder / "ckpt", model, spec, {"input_shape": [1, 28, 28]})
    (folder / "imported.flag").unlink(missing_ok=True)
    return ckpt


def flag(ckpt: Path) -> Path:
    return ckpt.parent / "imported.flag"


@pytest.mark.parametrize(
    "command",
    [
        ["serve", "--cut", "block2"],
        ["enclave", "--cut", "block2", "--tail", "http://127.0.0.1:9"],
        ["infer", "x.png", "--on-device", "--tail", "http://127.0.0.1:9", "--cut", "block2"],
    ],
)
def test_serving_refuses_a_code_checkpoint_without_trust_code(
    code_checkpoint: Path, tmp_path: Path, command: list[str]
) -> None:
    args = [*command, "--checkpoint", str(code_checkpoint)]
    if command[0] == "enclave":
        args += ["--platform-dir", str(tmp_path / "p")]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, PrivpartError), result.output
    assert "names its architecture as Python code" in result.exception.message
    assert "`trust_code=True`" in result.exception.hint  # the library's words ...
    assert "--trust-code" in spoken(result.exception)[1]  # ... as the command line says them
    assert not flag(code_checkpoint).exists()  # the file was never imported


def test_with_trust_code_it_loads_and_the_worker_refuses_it_unless_told(
    code_checkpoint: Path, tmp_path: Path
) -> None:
    split = split_checkpoint(code_checkpoint, "block2", trust_code=True)
    assert flag(code_checkpoint).exists()  # trusted: imported and run
    flag(code_checkpoint).unlink()
    platform = PlatformKeys.load_or_create(tmp_path / "p")
    backend = ProcessBackend(platform, EnclaveConfig(threads=1))
    sealed = backend.seal(split, tmp_path / "heads")
    argv = backend.worker_args(sealed, split.info.measurement)[2:]  # after -m MODULE
    assert "--trust-code" not in argv
    args = W.parse_args(argv)
    with pytest.raises(PrivpartError) as err:  # the sealed head names the file: refused inside
        W._load(args, io.BytesIO(), None)  # type: ignore[arg-type]
    assert "Python code" in err.value.message and not flag(code_checkpoint).exists()
    trusting = ProcessBackend(platform, EnclaveConfig(threads=1, trust_code=True))
    assert "--trust-code" in trusting.worker_args(sealed, split.info.measurement)
