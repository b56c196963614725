from __future__ import annotations

import json
from pathlib import Path

import pytest

from privpart import attacks as attack_pkg
from privpart.audit import AuditConfig, Auditor, AuditResult
from privpart.errors import PrivpartError
from privpart.profiling import ProfileConfig
from privpart.report import render_report
from privpart.training import train_to_checkpoint

FAST_PROFILE = ProfileConfig(repeats=3, warmup=1, untrusted_threads=1)


def tiny_cfg(ckpt: Path, **kw) -> AuditConfig:
    base = dict(
        model="tinycnn",
        checkpoint=str(ckpt),
        cuts="block1,block2,block3",
        attack_steps=4,
        profile=FAST_PROFILE,
    )
    return AuditConfig(**{**base, **kw})


def test_audit_end_to_end_then_resume(tiny_checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "audit"
    first = Auditor(tiny_cfg(tiny_checkpoint), out, show_progress=False).run()
    data = json.loads((out / "results.json").read_text())
    for key in (
        "selected_cut",
        "config",
        "environment",
        "cuts",
        "selection",
        "extremes",
        "privpart_version",
        "model",
        "data",
        "stage_seconds",
    ):
        assert key in data, key
    cut = data["cuts"][0]
    assert set(cut) == {"cut", "attacks", "latency", "verdict"}
    assert set(cut["attacks"]) == {"cgan", "decoder", "whitebox", "attribute"}
    for name in ("cgan", "decoder", "whitebox"):
        res = cut["attacks"][name]
        assert {"ssim", "psnr"} <= set(res["metrics"]) and "ssim" in res["baselines"]
        assert (out / res["grid"]).is_file()
    assert "accuracy" in cut["attacks"]["attribute"]["baselines"]
    for part in ("head_ms", "transfer_ms", "tail_ms", "total_ms", "head_memory"):
        assert part in cut["latency"]
    assert (
        cut["verdict"]["status"] in {"selected", "rejected", "passes"} and cut["verdict"]["reason"]
    )
    assert data["selected_cut"] == data["selection"]["selected"]

    def refuse(*a, **k):
        raise AssertionError("a finished (cut, attack) result was recomputed")

    monkeypatch.setattr(attack_pkg, "run_attack", refuse)
    monkeypatch.setattr(attack_pkg, "compute_feature_sets", refuse)
    second = Auditor(tiny_cfg(tiny_checkpoint), out, show_progress=False).run()
    assert all(r["cached"] for c in second.cuts for r in c.attacks.values())
    for a, b in zip(first.cuts, second.cuts, strict=True):
        for name in a.attacks:
            assert a.attacks[name]["metrics"] == b.attacks[name]["metrics"]
    page = render_report(out / "results.json")
    assert 'id="verdict"' in page.read_text()


def test_changed_config_is_not_served_from_cache(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "audit"
    Auditor(tiny_cfg(tiny_checkpoint, cuts="block2", attacks=["decoder"]), out, False).run()
    r = Auditor(
        tiny_cfg(tiny_checkpoint, cuts="block2", attacks=["decoder"], attack_steps=5), out, False
    ).run()
    assert r.cuts[0].attacks["decoder"]["cached"] is False


def test_validation_happens_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(PrivpartError, match="unknown attack 'gan'"):
        Auditor(AuditConfig(model="tinycnn", attacks=["gan"]), tmp_path, False).run()
    assert not (tmp_path / "target").exists(), "nothing may be trained before validation"
    with pytest.raises(PrivpartError, match="unknown model"):
        Auditor(AuditConfig(model="vgg99"), tmp_path, False).run()
    with pytest.raises(PrivpartError, match="not a privpart checkpoint"):
        Auditor(AuditConfig(checkpoint=str(tmp_path)), tmp_path, False).run()


def test_unknown_cut(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(PrivpartError, match="not a legal cut"):
        Auditor(tiny_cfg(tiny_checkpoint, cuts="block9"), tmp_path, False).run()


def test_tabular_ton_iot_audit(ton_csv: Path, tmp_path: Path) -> None:
    ckpt = train_to_checkpoint(
        "tinycnn",
        f"ton-iot:{ton_csv}",
        tmp_path / "ck",
        epochs=5,
        batch_size=16,
        show_progress=False,
    )
    out = tmp_path / "audit"
    r = Auditor(tiny_cfg(ckpt, cuts="default", attacks=["decoder", "attribute"]), out, False).run()
    assert r.data["kind"] == "tabular" and r.data["feature_names"]
    dec = r.cuts[0].attacks["decoder"]
    assert "feature_mae" in dec["metrics"] and "feature_mae" in dec["baselines"]
    assert set(dec["per_feature"]) == set(r.data["feature_names"])
    assert dec.get("grid") is None
    html = render_report(out / "results.json").read_text()
    assert "Best-recovered features" in html and "Reconstructions" not in html
    assert AuditResult.load(out / "results.json").selected_cut == r.selected_cut
