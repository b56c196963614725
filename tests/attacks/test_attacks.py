from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from privpart.attacks import (
    AttackerView,
    Budget,
    FeatureSet,
    compute_feature_sets,
    make_attack,
    run_attack,
)
from privpart.attacks.generator import FeatureGenerator, PatchDiscriminator
from privpart.attacks.scoring import score
from privpart.data import load_dataset, splits_from_meta
from privpart.partition import Partition
from privpart.training import load_checkpoint, train_to_checkpoint

# Small nets keep the suite fast; the defaults are exercised by bench/attacks.py.
SMALL = {
    "cgan": {"base_width": 8, "max_width": 16, "d_width": 8, "cond_channels": 4, "lr": 5e-3},
    "decoder": {"base_width": 8, "max_width": 16, "lr": 5e-3},
    "whitebox": {"victims": 8, "tune_images": 2, "tv_candidates": "0,0.05"},
    "attribute": {"hidden": 32, "attribute": "brightness"},
    "fora": {"width": 8, "batch_size": 16, "decoder_batch": 8},
    "prior": {"victims": 8, "latent": 8, "vae_width": 8, "tune_images": 2, "refine": "none,0"},
    "prior-decoder": {"latent": 8, "vae_width": 8, "projection_steps": 5},
    "denoiser": {"base_width": 8, "max_width": 16},
}


class Poisoned:
    """Stands in for the victims' inputs and labels: any use at all fails the test."""

    def __getattr__(self, name: str):  # noqa: ANN204
        raise AssertionError(f"the attack touched the victims (.{name})")

    def __getitem__(self, key: object):  # noqa: ANN204
        raise AssertionError("the attack touched the victims ([])")

    def __len__(self) -> int:
        raise AssertionError("the attack touched the victims (len)")


@pytest.mark.parametrize("name", sorted(SMALL))
def test_each_attack_end_to_end_never_seeing_the_victims(
    tiny_sets: dict[str, FeatureSet], name: str
) -> None:
    """Fit and run work on a view of a FeatureSet whose victim inputs and labels are poisoned:
    an attack has only the intercepted features; the framework scores with the real ones."""
    fs = tiny_sets["block3"]
    poisoned = replace(fs, victim_inputs=Poisoned(), victim_attributes=Poisoned(),
                       victim_index=Poisoned())  # fmt: skip
    attack = make_attack(name, Budget(steps=6), seed=0, **SMALL[name])
    view = AttackerView.of(poisoned, attack.threat_model)
    attack.fit(view)
    output = attack.run(view)
    result = score(attack, output, fs, attack.config(view), 1.0)
    assert result.attack == name and result.cut == "block3"
    assert result.threat_model is attack.threat_model
    want = {"accuracy"} if name == "attribute" else {"ssim", "psnr", "mse", "reid"}
    assert set(result.metrics) == want
    for m in result.metrics.values():
        assert math.isfinite(m.value) and m.estimate.interval is not None
        assert m.estimate.interval.low <= m.value <= m.estimate.interval.high
    assert result.config["seed"] == 0 and result.config["sizes"] == {"aux": 100, "victim": 32}
    if name == "attribute":
        assert result.config["attribute"] == "brightness"
        assert set(result.metric("accuracy").baselines) == {"majority", "chance", "task_floor"}
        assert result.metric("accuracy").baselines["chance"] == pytest.approx(1 / 3)
        assert result.samples is None and result.sample_inputs is not None
    else:
        assert result.samples is not None and result.samples.shape[1:] == fs.input_shape
        # what the server can draw from the prediction alone: the label's aux mean image
        assert 0 < result.metric("ssim").baselines["task_floor"] <= 1
        assert 0 < result.metric("reid").baselines["chance"] < 0.5
        assert float(result.samples.min()) >= 0 and float(result.samples.max()) <= 1


@pytest.mark.parametrize("name", ["decoder", "cgan"])
def test_identity_cut_reconstructs(tiny_sets: dict[str, FeatureSet], name: str) -> None:
    result = run_attack(name, tiny_sets["input"], Budget(steps=150), seed=0, **SMALL[name])
    assert result.ssim > 0.9, result.metrics
    assert result.ssim > result.metric("ssim").baselines["aux_mean"] + 0.3
    assert result.reid > 0.9  # a faithful reconstruction names its input


def test_whitebox_inverts_the_identity_cut(tiny_sets: dict[str, FeatureSet]) -> None:
    result = run_attack(
        "whitebox", tiny_sets["input"], Budget(steps=60), seed=0, **SMALL["whitebox"]
    )
    assert result.ssim > 0.9, result.metrics
    assert result.config["inversion"]["steps"] == 60
    assert result.metric("ssim").estimate.n == 8  # the first `victims` only


def test_leakage_falls_with_depth(tiny_sets: dict[str, FeatureSet]) -> None:
    early = run_attack("decoder", tiny_sets["block1"], Budget(steps=100), **SMALL["decoder"])
    late = run_attack("decoder", tiny_sets["fc"], Budget(steps=100), **SMALL["decoder"])
    assert early.ssim > 0.8 and early.ssim > late.ssim + 0.2


def test_attribute_beats_majority_at_an_early_cut(tiny_sets: dict[str, FeatureSet]) -> None:
    result = run_attack("attribute", tiny_sets["block3"], Budget(steps=100), hidden=32)
    acc = result.metric("accuracy")
    assert result.config["attribute"] == "class"  # idx data has no other attribute
    assert acc.value > acc.baselines["majority"] + 0.3, result
    assert acc.baselines["chance"] == pytest.approx(0.1)


def test_same_seed_and_steps_give_the_same_result(tiny_sets: dict[str, FeatureSet]) -> None:
    a = run_attack("decoder", tiny_sets["fc"], Budget(steps=8), seed=3, **SMALL["decoder"])
    b = run_attack("decoder", tiny_sets["fc"], Budget(steps=8), seed=3, **SMALL["decoder"])
    assert {k: m.estimate for k, m in a.metrics.items()} == {
        k: m.estimate for k, m in b.metrics.items()
    }


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
    assert "ssim" not in result.metrics and {"feature_mae", "reid"} <= set(result.metrics)
    mae = result.metric("feature_mae")
    assert set(result.per_feature) == set(fs.feature_names)
    assert mae.value < mae.baselines["aux_mean"]
    assert set(result.config["baseline_per_feature"]) == set(fs.feature_names)
    attr = run_attack("attribute", fs, Budget(steps=5), hidden=32)
    assert attr.config["attribute"] == "service"
