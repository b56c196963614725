"""The library surface: the documented snippet runs on a user's nn.Module and a plain torch
Dataset, returns typed results, and writes nothing unless asked to."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import TensorDataset

import privpart
from privpart.auditing import AuditResult
from privpart.selection import Status, Verdict
from tests.helpers import synthetic_images

DOC = Path(__file__).parents[1] / "docs" / "api.md"


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 7 * 7, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)))


@pytest.fixture(scope="module")
def model_and_data() -> tuple[nn.Module, TorchDataset]:
    images, labels = synthetic_images(600, seed=3)
    x = torch.from_numpy(images).float().div(255).unsqueeze(1)
    y = torch.from_numpy(labels).long()
    torch.manual_seed(0)
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(4):  # the user's own training loop: privpart never sees it
        for i in range(0, 600, 32):
            loss = nn.functional.cross_entropy(model(x[i : i + 32]), y[i : i + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), TensorDataset(x, y)


def test_the_documented_snippet_runs_and_returns_typed_results(
    model_and_data: tuple[nn.Module, TorchDataset], tmp_path: Path, monkeypatch
) -> None:
    model, dataset = model_and_data
    snippet = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope = {"model": model, "dataset": dataset}
    exec(compile(snippet, str(DOC), "exec"), scope)  # noqa: S102 (our own documentation)
    result = scope["result"]
    assert isinstance(result, AuditResult) and result.model["test_accuracy"] > 0.5
    assert isinstance(scope["verdict"], Verdict) and scope["verdict"].status in set(Status)
    assert 0 <= scope["decoder"].ssim <= 1 and scope["one"].metric("reid").estimate.n > 0
    assert [c.name for c in scope["legal"]][:2] == ["input", "stem.0"]
    assert list(tmp_path.iterdir()) == [], "nothing is written without out="
    assert result.config.model == "SmallCNN" and result.model["checkpoint"] is None


class WithAttributes(TorchDataset):
    """(image, label, {"bright": ...}): a per-image private attribute beside the task label."""

    def __init__(self, base: TensorDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, dict[str, int]]:
        x, y = self.base[i]
        return x, int(y), {"bright": int(x.mean() > 0.2)}


def test_per_item_attributes_feed_the_attribute_attack_and_out_writes_files(
    model_and_data: tuple[nn.Module, TorchDataset], tmp_path: Path
) -> None:
    model, dataset = model_and_data
    r = privpart.audit(model, WithAttributes(dataset), attacks=["attribute"], cuts=["stem"],
                       attack=privpart.AttackOptions(attribute="bright", attack_steps=20),
                       out=tmp_path / "out")  # fmt: skip
    acc = r.leakage("stem", "attribute").metric("accuracy")
    assert r.leakage("stem", "attribute").config["attribute"] == "bright"
    assert set(acc.baselines) == {"majority", "chance", "task_floor"}
    assert (tmp_path / "out" / "results.json").is_file()
    assert AuditResult.load(tmp_path / "out" / "results.json").verdicts.keys() == r.verdicts.keys()


def test_bad_data_gets_a_clear_error(model_and_data: tuple[nn.Module, TorchDataset]) -> None:
    model, dataset = model_and_data
    x, y = dataset.tensors
    with pytest.raises(privpart.PrivpartError, match="outside \\[0, 1\\]") as err:
        privpart.audit(model, TensorDataset(x * 2 - 1, y))
    assert "inside the model" in err.value.hint
    with pytest.raises(privpart.PrivpartError, match="not \\(C, H, W\\)"):
        privpart.audit(model, dataset, input_shape=(28, 28))


def test_audit_of_a_code_checkpoint_needs_trust_code(code_ckpt: Path) -> None:
    """`privpart.audit(model=<checkpoint folder>)` is the library's way to audit someone else's
    checkpoint: one that names a Python file is refused (the file never runs) unless
    `trust_code=True`."""
    from privpart.profiling import ProfileConfig
    from tests.helpers import code_marker

    marker = code_marker(code_ckpt)
    marker.unlink(missing_ok=True)
    quick = dict(cuts=["block2"], attacks=["decoder"], device="cpu",
                 attack=privpart.AttackOptions(attack_steps=2),
                 profile=ProfileConfig(repeats=3, warmup=1, untrusted_threads=1))  # fmt: skip
    with pytest.raises(privpart.PrivpartError, match="Python code") as err:
        privpart.audit(str(code_ckpt), None, **quick)
    assert str((code_ckpt.parent / "net.py").resolve()) in err.value.message
    assert "trust_code=True" in err.value.hint
    assert not marker.exists()
    r = privpart.audit(code_ckpt, None, trust_code=True, **quick)
    assert r.config.model == json.loads((code_ckpt / "meta.json").read_text())["spec"]["arch"]
    assert marker.exists() and "block2" in r.verdicts
    marker.unlink()


def test_docs_api_lists_the_signature_of_audit_in_order() -> None:
    import inspect

    section = DOC.read_text().split("## `privpart.audit(")[1].split("\n## ")[0]
    listed = re.findall(r"^\| `(\w+)", section, re.M)
    assert listed == list(inspect.signature(privpart.audit).parameters)


def test_a_bad_value_is_a_value_error_naming_the_parameter(
    model_and_data: tuple[nn.Module, TorchDataset],
) -> None:
    model, dataset = model_and_data
    with pytest.raises(ValueError, match="`attack_steps` must be positive") as err:
        privpart.audit(model, dataset, attack=privpart.AttackOptions(attack_steps=0))
    assert isinstance(err.value, privpart.PrivpartError) and err.value.param == "attack_steps"
    assert "--" not in str(err.value)
    with pytest.raises(TypeError, match="`lr` must be a float"):
        privpart.attack(model, dataset, cut="stem", attack="decoder", lr="fast")
    with pytest.raises(FileNotFoundError, match="not a privpart checkpoint"):
        privpart.audit(Path("no/such/checkpoint"), None)
