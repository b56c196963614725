from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from privpart.attacks import Budget, FeatureSet, compute_feature_sets, make_attack, run_attack
from privpart.attacks.generator import FeatureGenerator, PatchDiscriminator
from privpart.data import load_dataset, splits_from_meta
from privpart.partition import Partition
from privpart.training import load_checkpoint, train_to_checkpoint

# Small nets keep the suite fast; the defaults are exercised by bench/attacks.py.
SMALL = {
    "cgan": {"base_width": 8, "max_width": 16, "d_width": 8, "cond_channels": 4, "lr": 5e-3},
    "decoder": {"base_width": 8, "max_width": 16, "lr": 5e-3},
    "whitebox": {"victims": 8},
    "attribute": {"hidden": 32},
}


class Poisoned:
    """Stands in for the victim tensors during fit: any use at all fails the test."""

    def __getattr__(self, name: str):  # noqa: ANN204
        raise AssertionError(f"fit touched the victims (.{name})")

    def __getitem__(self, key: object):  # noqa: ANN204
        raise AssertionError("fit touched the victims ([])")

    def __len__(self) -> int:
        raise AssertionError("fit touched the victims (len)")


@pytest.mark.parametrize("name", ["cgan", "decoder", "whitebox", "attribute"])
def test_each_attack_end_to_end_never_fitting_on_victims(
    tiny_sets: dict[str, FeatureSet], name: str
) -> None:
    fs = tiny_sets["block3"]
    poisoned = replace(fs, victim_inputs=Poisoned(), victim_features=Poisoned(),
                       victim_attributes=Poisoned(), victim_index=Poisoned())  # fmt: skip
    attack = make_attack(name, Budget(steps=6), seed=0, **SMALL[name])
    attack.fit(poisoned)
    result = attack.evaluate(fs)
    assert result.attack == name and result.cut == "block3"
    assert result.threat_model == attack.threat_model
    want = {"accuracy"} if name == "attribute" else {"ssim", "psnr", "mse"}
    assert want <= set(result.metrics) and want - {"mse"} <= set(result.baselines)
    assert all(math.isfinite(v) for v in result.metrics.values())
    assert result.config["seed"] == 0 and result.config["sizes"] == {"aux": 100, "victim": 32}
    assert result.seconds > 0
    if name == "attribute":
        assert result.config["attribute"] == "class"  # idx data has no other attribute
        assert "chance" in result.baselines and result.samples is None
    else:
        assert result.samples is not None and result.samples.shape[1:] == fs.input_shape
        # what the server can draw from the prediction alone: the label's aux mean image
        assert (
            0 < result.baselines["task_floor_ssim"] <= 1 and "task_floor_psnr" in result.baselines
        )
        assert float(result.samples.min()) >= 0 and float(result.samples.max()) <= 1


@pytest.mark.parametrize("name", ["decoder", "cgan"])
def test_identity_cut_reconstructs(tiny_sets: dict[str, FeatureSet], name: str) -> None:
    result = run_attack(name, tiny_sets["input"], Budget(steps=150), seed=0, **SMALL[name])
    assert result.metrics["ssim"] > 0.9, result.metrics
    assert result.metrics["ssim"] > result.baselines["ssim"] + 0.3


def test_whitebox_inverts_the_identity_cut(tiny_sets: dict[str, FeatureSet]) -> None:
    result = run_attack(
        "whitebox", tiny_sets["input"], Budget(steps=60), seed=0, **SMALL["whitebox"]
    )
    assert result.metrics["ssim"] > 0.9, result.metrics
    assert result.config["inversion"]["steps"] == 60


def test_leakage_falls_with_depth(tiny_sets: dict[str, FeatureSet]) -> None:
    early = run_attack("decoder", tiny_sets["block1"], Budget(steps=100), **SMALL["decoder"])
    late = run_attack("decoder", tiny_sets["fc"], Budget(steps=100), **SMALL["decoder"])
    assert early.metrics["ssim"] > 0.8 and early.metrics["ssim"] > late.metrics["ssim"] + 0.2


def test_attribute_beats_majority_at_an_early_cut(tiny_sets: dict[str, FeatureSet]) -> None:
    result = run_attack("attribute", tiny_sets["block3"], Budget(steps=100), **SMALL["attribute"])
    assert result.metrics["accuracy"] > result.baselines["accuracy"] + 0.3, result
    assert result.baselines["chance"] == pytest.approx(0.1)


def test_same_seed_and_steps_give_the_same_result(tiny_sets: dict[str, FeatureSet]) -> None:
    a = run_attack("decoder", tiny_sets["fc"], Budget(steps=8), seed=3, **SMALL["decoder"])
    b = run_attack("decoder", tiny_sets["fc"], Budget(steps=8), seed=3, **SMALL["decoder"])
    assert a.metrics == b.metrics


def test_time_budget_stops_the_attack(tiny_sets: dict[str, FeatureSet]) -> None:
    # A step cap no machine reaches in 0.5 s, so only the deadline can end the fit.
    budget = Budget(seconds=0.5, steps=10**7)
    result = run_attack("decoder", tiny_sets["block3"], budget, **SMALL["decoder"])
    fit = result.config["fit"]
    assert fit["seconds"] == 0.5 and fit["step_cap"] == 10**7 and 0 < fit["steps"] < 10**7
    assert result.seconds < 5


@pytest.mark.parametrize(
    "shape", [(512,), (64, 1, 1), (32, 2, 2), (16, 7, 7), (8, 28, 28), (4, 5, 5), (3, 40, 40)]
)
def test_generator_handles_any_feature_shape(shape: tuple[int, ...]) -> None:
    for out in [(1, 28, 28), (1, 32, 32), (3, 8, 8), (1, 6, 6)]:
        g, d = FeatureGenerator(shape, out), PatchDiscriminator(shape, out)
        f = torch.randn(2, *shape)
        img = g(f)
        assert img.shape == (2, *out) and float(img.detach().min()) >= 0
        assert float(img.detach().max()) <= 1
        assert d(img, f).dim() == 4


def test_tabular_scores_per_feature(ton_csv: Path, tmp_path: Path) -> None:
    ck = train_to_checkpoint("tinycnn", f"ton-iot:{ton_csv}", tmp_path / "ck", epochs=1,
                             show_progress=False, n_aux=60, n_victim=20)  # fmt: skip
    model, meta = load_checkpoint(ck)
    ds = load_dataset(meta["dataset_spec"])
    part = Partition(model, tuple(meta["input_shape"]))
    size = tuple(meta["input_shape"][1:])
    splits = splits_from_meta(ds, meta)
    fs = compute_feature_sets(part, ds, splits, [part.cut("block1")], size, show_progress=False)[
        "block1"
    ]
    assert fs.kind == "tabular" and fs.feature_names
    result = run_attack("decoder", fs, Budget(steps=60), **SMALL["decoder"])
    assert "feature_mae" in result.metrics and "feature_mae" in result.baselines
    assert set(result.per_feature) == set(fs.feature_names)
    assert result.metrics["feature_mae"] < result.baselines["feature_mae"]
    attr = run_attack("attribute", fs, Budget(steps=5), **SMALL["attribute"])
    assert attr.config["attribute"] == "service"
