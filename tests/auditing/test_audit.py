from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from typer.testing import CliRunner

from privpart import attacks as attack_pkg
from privpart.attacks import ATTACKS, Attack, AttackerView, AttackOutput, Metric, ThreatModel
from privpart.auditing import AuditConfig, Auditor, AuditResult
from privpart.cli.audit import print_summary
from privpart.errors import PrivpartError
from privpart.metrics.spec import BaselineSpec, Direction, Margin, MetricSpec
from privpart.profiling import ProfileConfig
from privpart.report import render_report
from privpart.selection import Status
from privpart.training import train_to_checkpoint
from privpart.ui import console

FAST_PROFILE = ProfileConfig(repeats=3, warmup=1, untrusted_threads=1)


def tiny_cfg(ckpt: Path, **kw) -> AuditConfig:
    base = dict(
        model="tinycnn",
        checkpoint=str(ckpt),
        cuts="block1,block2,block3",
        attack_steps=4,
        attribute="brightness",
        profile=FAST_PROFILE,
        search="exhaustive",  # these tests read every figure at every cut
        figures="all",
    )
    return AuditConfig(**{**base, **kw})


def test_audit_end_to_end_then_resume(tiny_checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "audit"
    first = Auditor(tiny_cfg(tiny_checkpoint), out, show_progress=False).run()
    data = json.loads((out / "results.json").read_text())
    assert data["schema_version"] == 2
    for key in ("selected_cut", "config", "environment", "cuts", "selection", "extremes",
                "privpart_version", "model", "data", "stage_seconds"):  # fmt: skip
        assert key in data, key
    cut = first.cuts[0]
    assert list(cut.attacks) == list(attack_pkg.DEFAULT_ATTACKS)
    assert list(cut.attacks) == ["decoder", "whitebox", "prior", "attribute"]
    for name in ("decoder", "whitebox", "prior"):
        res = cut.attacks[name]
        assert {"ssim", "psnr", "reid"} <= set(res.metrics)
        assert res.metric("ssim").estimate.interval is not None
        assert (out / res.grid).is_file()
    assert cut.attacks["attribute"].config["attribute"] == "brightness"
    assert cut.latency.total_ms > 0 and cut.latency.head_memory["total"] > 0
    assert cut.verdict.status in set(Status) and cut.verdict.reasons
    assert first.selected_cut == data["selection"]["selected"]
    assert set(first.verdicts) == {c.name for c in first.cuts} | {"whole model trusted"}

    def refuse(*a, **k):
        raise AssertionError("a finished (cut, attack) result was recomputed")

    monkeypatch.setattr(attack_pkg, "run_attack", refuse)
    monkeypatch.setattr(attack_pkg, "compute_feature_sets", refuse)
    second = Auditor(tiny_cfg(tiny_checkpoint), out, show_progress=False).run()
    assert all(r.cached for c in second.cuts for r in c.attacks.values())
    for a, b in zip(first.cuts, second.cuts, strict=True):
        for name in a.attacks:
            assert a.attacks[name].to_dict()["metrics"] == b.attacks[name].to_dict()["metrics"]
    page = render_report(out / "results.json")
    assert 'id="verdict"' in page.read_text()


def test_changed_config_is_not_served_from_cache(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "audit"
    Auditor(tiny_cfg(tiny_checkpoint, cuts="block2", attacks=["decoder"]), out, False).run()
    r = Auditor(
        tiny_cfg(tiny_checkpoint, cuts="block2", attacks=["decoder"], attack_steps=5), out, False
    ).run()
    assert r.cuts[0].attacks["decoder"].cached is False
    r = Auditor(
        tiny_cfg(tiny_checkpoint, cuts="block2", attacks=["decoder"], attack_steps=5,
                 attack_params={"decoder": {"lr": 1e-3}}), out, False,
    ).run()  # fmt: skip
    assert r.cuts[0].attacks["decoder"].cached is False
    assert r.cuts[0].attacks["decoder"].config["params"]["lr"] == 1e-3


def test_an_attribute_attack_with_nothing_but_the_task_to_infer_is_skipped(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    r = Auditor(tiny_cfg(tiny_checkpoint, cuts="block2", attacks=["decoder", "attribute"],
                         attribute=None), None, False).run()  # fmt: skip
    (cut,) = r.cuts
    assert list(cut.attacks) == ["decoder"]
    assert "no private attribute other than the task label (class)" in cut.skipped["attribute"]
    assert "--attribute" in cut.skipped["attribute"]


def test_validation_happens_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(PrivpartError, match="unknown attack 'gan'"):
        Auditor(AuditConfig(model="tinycnn", attacks=["gan"]), tmp_path, False).run()
    assert not (tmp_path / "target").exists(), "nothing may be trained before validation"
    with pytest.raises(PrivpartError, match="unknown model"):
        Auditor(AuditConfig(model="vgg99"), tmp_path, False).run()
    with pytest.raises(PrivpartError, match="not a privpart checkpoint"):
        Auditor(AuditConfig(checkpoint=str(tmp_path)), tmp_path, False).run()
    with pytest.raises(PrivpartError, match="decoder.*has no parameter"):
        Auditor(AuditConfig(model="tinycnn", attacks=["decoder"],
                            attack_params={"decoder": {"tv": 1}}), tmp_path, False).run()
    assert not (tmp_path / "target").exists()


def test_unknown_cut(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(PrivpartError, match="not a legal cut"):
        Auditor(tiny_cfg(tiny_checkpoint, cuts="block9"), tmp_path, False).run()


def test_tabular_ton_iot_audit(ton_csv: Path, tmp_path: Path) -> None:
    ckpt = train_to_checkpoint(
        "tinycnn", f"ton-iot:{ton_csv}", tmp_path / "ck", epochs=5, batch_size=16,
        show_progress=False,
    )  # fmt: skip
    out = tmp_path / "audit"
    r = Auditor(tiny_cfg(ckpt, cuts="default", attacks=["decoder", "attribute"], attribute=None),
                out, False).run()  # fmt: skip
    assert r.data["kind"] == "tabular" and r.data["feature_names"]
    dec = r.cuts[0].attacks["decoder"]
    assert "feature_mae" in dec.metrics and "aux_mean" in dec.metric("feature_mae").baselines
    assert set(dec.per_feature) == set(r.data["feature_names"])
    assert dec.grid is None
    assert r.cuts[0].attacks["attribute"].config["attribute"] == "service"
    html = render_report(out / "results.json").read_text()
    assert "Best-recovered features" in html and "Reconstructions" not in html
    assert AuditResult.load(out / "results.json").selected_cut == r.selected_cut


# -- a new attack with a new kind of output and a new metric, declared here only -----------
def _darkness(output: AttackOutput, truth) -> torch.Tensor:  # noqa: ANN001
    """Per victim: 1 where the attacker says the input is darker than the aux mean, and is."""
    guess = output.get("darker")
    assert guess is not None
    real = truth.victims.flatten(1).mean(1) < truth.fs.aux_inputs.mean()
    return (guess.bool() == real).float()


DARKNESS = Metric(
    MetricSpec("darkness", "darkness guess", Direction.HIGHER, Margin(0.05),
               (BaselineSpec("coin", "coin flip"),), summary="says whether the input is dark"),
    _darkness,
    lambda truth: {"coin": 0.5},
    needs="darker",  # the output kind it reads: Oracle returns it by this name
)  # fmt: skip


class Oracle(Attack):
    """Reads brightness off the features' mean: a toy whose output and metric no built-in
    stage knows."""

    name: ClassVar[str] = "oracle"
    threat_model: ClassVar[ThreatModel] = ThreatModel.BLACK_BOX_QUERY
    metrics: ClassVar[tuple] = (DARKNESS,)

    def fit(self, view: AttackerView) -> None:
        f = view.aux_features.flatten(1).mean(1)
        x = view.aux_inputs.flatten(1).mean(1)
        self.a = float(torch.cov(torch.stack([f, x]))[0, 1] / f.var())
        self.b = float(x.mean() - self.a * f.mean())
        self.threshold = float(x.mean())

    def run(self, view: AttackerView) -> AttackOutput:
        level = self.a * view.intercepted.flatten(1).mean(1) + self.b
        return AttackOutput(outputs={"darker": level < self.threshold})


@pytest.fixture
def oracle() -> object:
    ATTACKS.register("oracle")(Oracle)
    yield Oracle
    ATTACKS._items.pop("oracle")


def test_a_new_attack_with_a_new_metric_is_selected_rendered_and_printed(
    oracle: object, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "audit"
    r = Auditor(tiny_cfg(tiny_checkpoint, attacks=["oracle"]), out, False).run()
    dark = r.leakage("block1", "oracle").metric("darkness")
    assert dark.spec.label == "darkness guess" and dark.baselines == {"coin": 0.5}
    assert dark.value > 0.8  # the features give brightness away
    verdict = r.verdicts["block1"]
    assert verdict.status is Status.REJECTED
    assert "oracle: darkness guess" in verdict.text and "> 0.55 (coin flip 0.50)" in verdict.text
    again = AuditResult.load(out / "results.json")  # the declaration travels in results.json
    assert again.leakage("block1", "oracle").metric("darkness").spec == dark.spec
    html = render_report(out / "results.json").read_text()
    assert "darkness guess" in html and "coin flip" in html
    with console.capture() as captured:
        print_summary(r)
    assert "darkness guess" in captured.get() and "oracle" in captured.get()


def test_the_cli_runs_the_audit_and_prints_the_verdict(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from privpart.cli import app

    out = tmp_path / "cli"
    result = CliRunner().invoke(app, [
        "audit", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--cuts", "block2",
        "--attacks", "decoder,whitebox", "--budget-scale", "0.02",
        "--attack-param", "whitebox.victims=4", "--max-reid", "0.9",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    r = AuditResult.load(out / "results.json")
    assert r.leakage("block2", "whitebox").metric("ssim").estimate.n == 4
    assert r.config.constraints.limits["reid"].value == 0.9
    assert (out / "index.html").is_file()
    bad = CliRunner().invoke(app, ["audit", "--checkpoint", str(tiny_checkpoint), "--out",
                                   str(out), "--attack-param", "decoder.lr=fast"])  # fmt: skip
    assert isinstance(bad.exception, PrivpartError) and "not a float" in str(bad.exception)


def test_an_audit_loads_the_python_model_its_caller_named_without_trust_code(
    code_ckpt: Path, tmp_path: Path
) -> None:
    """`privpart audit path/to/file.py:factory` names the code itself: the checkpoint the audit
    made from it (here: one left by an earlier run) loads without --trust-code; the same
    checkpoint given as --checkpoint needs it."""
    import shutil

    from tests.helpers import code_marker

    arch = json.loads((code_ckpt / "meta.json").read_text())["spec"]["arch"]
    shutil.copytree(code_ckpt, tmp_path / "target")
    named = Auditor(AuditConfig(model=arch, dataset="unused"), tmp_path, show_progress=False)
    assert named.load_target().arch == arch and code_marker(code_ckpt).exists()
    code_marker(code_ckpt).unlink()
    given = Auditor(AuditConfig(checkpoint=str(code_ckpt)), tmp_path, show_progress=False)
    with pytest.raises(PrivpartError, match="Python code"):
        given.load_target()
    assert not code_marker(code_ckpt).exists()
