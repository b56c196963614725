"""Audits of the models people deploy: a pretrained 1000-class torchvision checkpoint at 224 px
audited as it is, a near-chance target stopped before it is judged, features in passes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

import privpart
from privpart.auditing import AuditConfig, Auditor
from privpart.data.synthetic import write_image_folder
from privpart.models import ModelSpec, build_model
from privpart.profiling import ProfileConfig
from privpart.training import import_to_checkpoint

FAST_PROFILE = ProfileConfig(repeats=3, warmup=1, untrusted_threads=1)


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An RGB image folder with an attributes file (identity-like classes, a private tint)."""
    return write_image_folder(tmp_path_factory.mktemp("faces"), 45, classes=3, size=64, fmt="jpg")


def test_pretrained_224px_checkpoint_audits_without_training(faces: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "efficientnet_b0.pth"  # torchvision's format: 1000 classes
    torch.save(torchvision.models.efficientnet_b0(weights=None).state_dict(), weights)
    r = privpart.audit(
        "efficientnet_b0", f"imagefolder:{faces}", cuts=["features.2"],
        attacks=["decoder", "attribute"], device="cpu", out=tmp_path / "out",
        target=privpart.TargetOptions(weights=weights, train=False, allow_weak_target=True,
                                      attributes=faces / "attributes.csv"),
        attack=privpart.AttackOptions(attack_steps=2), profile=FAST_PROFILE,
    )  # fmt: skip
    spec = r.model["spec"]
    assert (spec["num_classes"], spec["input_size"]) == (1000, [224, 224])
    assert spec["normalization"]["name"] == "imagenet"
    assert "train" not in r.stage_seconds and "import" in r.stage_seconds
    assert r.model["target_check"]["weak"]  # random weights: measured, near chance, allowed
    cut = r.cuts[0]
    assert cut.attacks["attribute"].config["attribute"] == "tint"  # from the attributes file
    assert cut.attacks["decoder"].metric("ssim").estimate.n == r.data["split_sizes"]["victim"]
    meta = json.loads((tmp_path / "out" / "target" / "meta.json").read_text())
    assert meta["trained"] is False and meta["attributes_file"]


def test_near_chance_target_stops_the_audit_with_exit_2(faces: Path, tmp_path: Path) -> None:
    weights = tmp_path / "untrained.safetensors"
    model = build_model(ModelSpec("tinycnn", 3, 3, (16, 16)))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    ckpt = import_to_checkpoint("tinycnn", weights, f"imagefolder:{faces}@16", tmp_path / "weak",
                                device="cpu", show_progress=False)  # fmt: skip
    cmd = [sys.executable, "-c", "from privpart.cli import main; main()", "audit",
           "--checkpoint", str(ckpt), "--out", str(tmp_path / "a"), "--device", "cpu"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "near chance" in proc.stderr and "--allow-weak-target" in proc.stderr
    assert "train longer" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "a" / "results.json").exists()


def test_features_in_passes_give_the_same_results(tiny_checkpoint: Path, tmp_path: Path) -> None:
    base = dict(model="tinycnn", checkpoint=str(tiny_checkpoint), cuts="block1,block2,block3",
                attacks=["decoder"], attack_steps=3, profile=FAST_PROFILE)  # fmt: skip
    one = Auditor(AuditConfig(**base), tmp_path / "one", show_progress=False).run()
    many = Auditor(AuditConfig(**base, feature_memory_gib=1e-6), tmp_path / "many", False).run()
    for a, b in zip(one.cuts, many.cuts, strict=True):
        assert (
            a.attacks["decoder"].to_dict()["metrics"] == b.attacks["decoder"].to_dict()["metrics"]
        )
