from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from privpart import attacks as attack_pkg
from privpart.auditing import AuditConfig, Auditor
from privpart.cli import app
from privpart.defences import DEFENCES, defend, make_defence
from privpart.defences.adversarial import AdversarialDefence
from privpart.defences.nopeek import distance_correlation
from privpart.defences.private import determined_by
from privpart.errors import PrivpartError
from privpart.models.wrappers import CutNoise, noise_modules, set_noise
from privpart.partition import Partition
from privpart.profiling import ProfileConfig
from privpart.training import load_checkpoint, read_meta

# Tiny budgets: each defence trains a handful of steps on the tiny CNN.
QUICK = {"steps": 6, "batch_size": 16, "limit": 96}
PARAMS = {
    "adversarial": {**QUICK, "alpha": 1.0, "beta": 1.0, "private_attribute": "brightness",
                    "warmup": 3, "adv_width": 8},
    "nopeek": {**QUICK, "alpha": 1.0},
    "noise": {**QUICK, "sigma": 0.5},
    "bottleneck": {**QUICK, "channels": 2, "sigma": 1.0, "distill": 0.0},
}  # fmt: skip
CUT = "block2"


@pytest.fixture(scope="module")
def defended(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("defended")
    return {
        m: defend(tiny_checkpoint, m, CUT, root / m, PARAMS[m], show_progress=False)
        for m in DEFENCES.names()
    }


def test_registry_has_the_four_defences() -> None:
    assert DEFENCES.names() == ["adversarial", "bottleneck", "noise", "nopeek"]


@pytest.mark.parametrize("method", ["adversarial", "nopeek", "noise"])
def test_defended_checkpoint_records_and_loads(
    method: str, defended: dict[str, Path], tiny_checkpoint: Path, monkeypatch
) -> None:
    def refuse(*a, **k):  # noqa: ANN002, ANN003
        raise AssertionError("checkpoints must never be unpickled")

    for owner, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(owner, name, refuse)
    model, meta = load_checkpoint(defended[method])
    base_meta = read_meta(tiny_checkpoint)
    rec = meta["defence"]
    assert rec["method"] == method and rec["cut"] == CUT
    assert rec["params"]["steps"] == 6 and rec["training"]["steps"] == 6
    assert 0.0 <= rec["task_accuracy"] <= 1.0 and meta["test_accuracy"] == rec["task_accuracy"]
    assert rec["base_weights_sha256"] == base_meta["weights_sha256"]
    assert rec["base_task_accuracy"] == base_meta["test_accuracy"]
    assert meta["weights_sha256"] != base_meta["weights_sha256"], "fine-tuning changed nothing"
    for key in ("dataset_spec", "split_seed", "split_sizes", "task", "input_shape"):
        assert meta[key] == base_meta[key], key  # the audit re-creates the same splits
    if method == "adversarial":
        assert rec["private_attribute"] == "brightness"
        assert set(rec["no_information_levels"]) >= {"rec_l1", "attribute_ce"}


@pytest.mark.parametrize("method", ["adversarial", "nopeek", "noise"])
def test_defended_model_splits_exactly(method: str, defended: dict[str, Path]) -> None:
    """tail(head(x)) == model(x) in eval mode; with noise: for the same RNG state."""
    model, meta = load_checkpoint(defended[method])
    part = Partition(model, tuple(meta["input_shape"]))
    x = torch.rand(5, *meta["input_shape"], generator=torch.Generator().manual_seed(3))
    for cut in ("block1", CUT, "block3"):
        split = part.split(cut)
        torch.manual_seed(7)
        whole = model(x)
        torch.manual_seed(7)
        assert torch.equal(split.tail(split.head(x)), whole), cut


def test_noise_is_in_the_head_and_at_inference(
    defended: dict[str, Path], tiny_checkpoint: Path
) -> None:
    model, meta = load_checkpoint(defended["noise"])
    (noise,) = noise_modules(model)
    assert float(noise.sigma) == 0.5 and noise.scale.shape == (1, 32, 1, 1)
    assert float(noise.scale.min()) > 0, "calibrated to the clean features' per-channel std"
    part = Partition(model, tuple(meta["input_shape"]))
    split = part.split(CUT)
    x = torch.rand(4, *meta["input_shape"])
    assert not torch.equal(split.head(x), split.head(x)), "the head adds fresh noise per call"
    assert part.cut(f"{CUT}.inner").index < part.cut(CUT).index, "pre-noise value is its own cut"
    set_noise(model, 0.0)  # buffers: switching noise off applies to the traced halves too
    assert torch.equal(split.head(x), split.head(x))
    assert torch.equal(split.tail(split.head(x)), model(x))
    # The head is frozen: its weights are the undefended ones; only the tail was fine-tuned.
    base, _ = load_checkpoint(tiny_checkpoint)
    assert torch.equal(model.block1[0].weight, base.block1[0].weight)
    assert not torch.equal(model.fc.weight, base.fc.weight)
    state = load_file(str(defended["noise"] / "model.safetensors"))
    assert {"block2.noise.scale", "block2.noise.sigma"} <= set(state)


def test_adversaries_are_not_saved(defended: dict[str, Path], tiny_checkpoint: Path) -> None:
    keys = set(load_file(str(defended["adversarial"] / "model.safetensors")))
    assert keys == set(load_file(str(tiny_checkpoint / "model.safetensors")))


def test_reaudit_uses_fresh_attackers(tiny_checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    """The audit attacks the defended head with new attackers, never the in-loop adversary."""
    defences: list[AdversarialDefence] = []
    attackers: list[attack_pkg.Attack] = []
    timeline: list[str] = []
    original_setup, original_make = AdversarialDefence.setup, attack_pkg.make_attack

    def spy_setup(self, ctx):  # noqa: ANN001
        defences.append(self)
        timeline.append("defence")
        return original_setup(self, ctx)

    def spy_make(*args, **kwargs):  # noqa: ANN002, ANN003
        attack = original_make(*args, **kwargs)
        attackers.append(attack)
        timeline.append("attack")
        return attack

    monkeypatch.setattr(AdversarialDefence, "setup", spy_setup)
    monkeypatch.setattr(attack_pkg, "make_attack", spy_make)
    cfg = AuditConfig(
        model="tinycnn",
        checkpoint=str(tiny_checkpoint),
        cuts=CUT,
        attacks=["decoder", "attribute"],
        attribute="brightness",
        attack_steps=3,
        adaptive=False,  # the attacks that know the defence: tests/attacks/test_adaptive.py
        profile=ProfileConfig(repeats=3, warmup=1, untrusted_threads=1),
        defence="adversarial",
        defence_cut=CUT,
        defence_params=PARAMS["adversarial"],
    )
    result = Auditor(cfg, tmp_path / "audit", show_progress=False).run()

    (defence,) = defences
    adversaries = defence.adversaries
    assert len(adversaries) == 2, "decoder + attribute classifier took part in the game"
    assert timeline[0] == "defence" and timeline.count("attack") == 2
    assert {a.name for a in attackers} == {"decoder", "attribute"}
    adversary_modules = [m for adv in adversaries for m in adv.modules()]
    adversary_tensors = {p.data_ptr() for adv in adversaries for p in adv.parameters()}
    for attack in attackers:
        assert attack.fitted
        nets = [v for v in vars(attack).values() if isinstance(v, torch.nn.Module)]
        assert nets, f"{attack.name} trained no network of its own"
        for net in nets:
            for m in net.modules():
                assert all(m is not a for a in adversary_modules), "in-loop adversary reused"
            assert not {p.data_ptr() for p in net.parameters()} & adversary_tensors
    assert result.defence["method"] == "adversarial"
    assert Path(result.model["checkpoint"]).name == f"defended-adversarial-{CUT}"
    data = json.loads((tmp_path / "audit" / "results.json").read_text())
    assert data["config"]["defence_params"]["alpha"] == 1.0


@pytest.mark.parametrize(
    ("method", "params", "match"),
    [
        ("adversarial", {"alpha": -1.0}, "`alpha` must be >= 0"),
        ("adversarial", {"beta": -0.5}, "`beta` must be >= 0"),
        ("noise", {"sigma": 0.0}, "`sigma` must be > 0"),
        ("noise", {"sigma": -2.0}, "`sigma` must be > 0"),
        ("noise", {"alpha": 1.0}, "has no parameter"),
        ("nopeek", {"alpha": float("nan")}, "must be finite"),
        ("nopeek", {"epochs": 0}, "`epochs` must be >= 1"),
        ("nopeek", {"alpha": "lots"}, "must be a float"),
        ("shredder", {}, "unknown defence 'shredder'"),
    ],
)
def test_invalid_parameters(method: str, params: dict, match: str) -> None:
    with pytest.raises(PrivpartError, match=match) as info:
        make_defence(method, **params)
    assert info.value.hint, "every error says what to do"


def test_invalid_setup_fails_before_training(tiny_checkpoint: Path, tmp_path: Path) -> None:
    cases = [
        ("nopeek", "block9", {}, "not a legal cut"),
        ("nopeek", "input", {}, "nothing to defend"),
        ("adversarial", CUT, {"private_attribute": "colour"}, "no attribute 'colour'"),
        ("adversarial", CUT, {"private_attribute": "class"}, "is the model's task label"),
        ("noise", "flatten", {}, "not a module"),
    ]
    for method, cut, params, match in cases:
        out = tmp_path / f"{method}-{cut}"
        with pytest.raises(PrivpartError, match=match) as info:
            defend(tiny_checkpoint, method, cut, out, {**QUICK, **params}, show_progress=False)
        assert info.value.hint
        assert not out.exists(), "nothing may be written before validation"


@pytest.mark.parametrize("method", ["adversarial", "bottleneck"])
def test_a_bad_private_attribute_is_a_value_error_naming_its_parameter(
    tiny_checkpoint: Path, tmp_path: Path, method: str
) -> None:
    """Both defences that take a private attribute refuse the task label, before any work."""
    with pytest.raises(ValueError, match="is the model's task label") as info:
        defend(tiny_checkpoint, method, CUT, tmp_path / "x",
               {**QUICK, "private_attribute": "class"}, show_progress=False)  # fmt: skip
    assert isinstance(info.value, PrivpartError) and info.value.param == "private_attribute"
    assert "`task=group`" in info.value.hint  # the library's words; the CLI says --task group
    assert not (tmp_path / "x").exists()


def test_defending_a_defended_checkpoint_is_refused(defended: dict[str, Path], tmp_path) -> None:
    with pytest.raises(PrivpartError, match="already defended"):
        defend(defended["nopeek"], "nopeek", CUT, tmp_path / "x", QUICK, show_progress=False)


def test_attribute_determined_by_the_task_is_refused() -> None:
    cls = torch.tensor([0, 1, 2, 3, 0, 5, 6, 7, 8, 9, 2])
    group = torch.tensor([0, 1, 0, 0, 0, 2, 0, 2, 3, 2])[cls]  # Fashion-MNIST's grouping
    assert determined_by(group, cls), "the group is a function of the class: unhideable"
    assert not determined_by(cls, group), "the class within a group is hideable"


def test_distance_correlation() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 20, generator=g)
    assert float(distance_correlation(x, x)) == pytest.approx(1.0, abs=1e-4)
    assert float(distance_correlation(x, 3 * x + 1)) == pytest.approx(1.0, abs=1e-4)
    # The sample (V-statistic) dCor of NoPeek is biased upwards in high dimensions, so
    # independent batches score well above 0; what matters is the ordering.
    independent = float(distance_correlation(x, torch.randn(64, 20, generator=g)))
    related = float(distance_correlation(x, x + 0.5 * torch.randn(64, 20, generator=g)))
    assert independent < related < 1.0
    x.requires_grad_(True)
    distance_correlation(x, x.pow(2)).backward()
    assert torch.isfinite(x.grad).all()


def test_cut_noise_module() -> None:
    noise = CutNoise(torch.full((1, 3, 1, 1), 2.0), sigma=0.5)
    x = torch.zeros(2000, 3, 4, 4)
    assert float(noise(x).std()) == pytest.approx(1.0, rel=0.05)


runner = CliRunner()


def test_cli_defend(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "d"
    args = ["defend", "--checkpoint", str(tiny_checkpoint), "--cut", CUT, "--method", "nopeek",
            "--alpha", "0.3", "--steps", "4", "--limit", "64", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rec = read_meta(out)["defence"]
    assert rec["method"] == "nopeek" and rec["params"]["alpha"] == 0.3


def test_cli_rejects_bad_defence_options(tiny_checkpoint: Path, tmp_path: Path) -> None:
    args = ["defend", "--checkpoint", str(tiny_checkpoint), "--cut", CUT, "--method", "noise",
            "--sigma", "-1", "--out", str(tmp_path)]  # fmt: skip
    bad = runner.invoke(app, args)
    assert isinstance(bad.exception, PrivpartError) and "sigma" in str(bad.exception)
    orphan = runner.invoke(app, ["audit", "tinycnn", "--alpha", "1", "--out", str(tmp_path)])
    assert isinstance(orphan.exception, PrivpartError)
    assert "without --defence" in str(orphan.exception)
    no_cut = runner.invoke(app, ["audit", "tinycnn", "--defence", "nopeek", "--out", str(tmp_path)])
    assert isinstance(no_cut.exception, PrivpartError)
    assert "--defence-cut" in str(no_cut.exception)
    assert not (tmp_path / "target").exists(), "validation comes before training"
