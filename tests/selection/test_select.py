from __future__ import annotations

import json

from privpart.attacks import AttackResult, MetricResult, ThreatModel
from privpart.metrics import ACCURACY, FEATURE_MAE, PSNR, REID, SSIM
from privpart.metrics.spec import Cap, Estimate, Interval
from privpart.selection import (
    WHOLE_TRUSTED,
    Breach,
    Constraints,
    CutEvidence,
    OverMemory,
    Selection,
    Status,
    select_cut,
)

MiB = 2**20


def result(attack: str, **figures: float | tuple[float, float, float]) -> AttackResult:
    """An attack result with the built-in metrics' declarations and the given figures:
    a number, or (value, low, high) for a figure with its interval; baselines as `*_base`."""
    specs = {"ssim": SSIM, "psnr": PSNR, "reid": REID, "accuracy": ACCURACY,
             "feature_mae": FEATURE_MAE}  # fmt: skip
    defaults = {"ssim": {"aux_mean": 0.2}, "psnr": {"aux_mean": 8.0}, "reid": {"chance": 0.1},
                "accuracy": {"majority": 0.3, "chance": 0.1},
                "feature_mae": {"aux_mean": 0.2}}  # fmt: skip
    metrics = {}
    for name, fig in figures.items():
        if name.endswith("_base"):
            continue
        value, iv = (fig, None) if isinstance(fig, float | int) else (fig[0], Interval(*fig[1:]))
        base = figures.get(f"{name}_base", defaults[name])
        metrics[name] = MetricResult(specs[name].spec, Estimate(float(value), iv, 64), base)
    tm = ThreatModel.LABELLED_AUX if "accuracy" in figures else ThreatModel.BLACK_BOX_QUERY
    return AttackResult(attack, tm, "cut", metrics, {}, 1.0)


def ev(cut: str, ms: float, mem: float = 1, ssim: float = 0.1, acc: float = 0.3) -> CutEvidence:
    return CutEvidence(
        cut, ms, int(mem * MiB),
        {"cgan": result("cgan", ssim=ssim, psnr=10.0),
         "attribute": result("attribute", accuracy=acc)},
    )  # fmt: skip


WHOLE = CutEvidence(WHOLE_TRUSTED, 100.0, 50 * MiB, {})


def test_fastest_passing_cut_wins_and_every_loser_has_a_reason() -> None:
    cands = [ev("a", 5, ssim=0.9), ev("b", 8, acc=0.8), ev("c", 12), ev("d", 20)]
    sel = select_cut(cands, WHOLE, Constraints())
    assert sel.selected == "c" and sel.verdicts["c"].status is Status.SELECTED
    (breach,) = sel.verdicts["a"].breaches
    assert (breach.attack, breach.metric, breach.value, breach.limit) == ("cgan", "ssim", 0.9, 0.4)
    assert "cgan: SSIM 0.90 > 0.40 (floor)" in sel.reasons["a"]
    want = "attribute: attribute accuracy 0.80 > 0.40 (majority class 0.30, chance 0.10)"
    assert want in sel.reasons["b"]
    assert "slower: 20.00 ms vs 12.00 ms for c" in sel.reasons["d"]
    assert sel.verdicts["d"].status is Status.PASSES and "slower" in sel.reasons[WHOLE_TRUSTED]
    assert set(sel.reasons) == {"a", "b", "d", WHOLE_TRUSTED}
    assert sel.summary.startswith("Cut at c")


def test_baseline_raises_the_ssim_threshold() -> None:
    # the aux-mean image already scores 0.45: 0.5 is no real leak, 0.6 is
    def recon(v: float) -> dict:
        return {"decoder": result("decoder", ssim=v, ssim_base={"aux_mean": 0.45})}

    cands = [CutEvidence("a", 1, 0, recon(0.5)), CutEvidence("b", 2, 0, recon(0.6))]
    assert select_cut(cands, None, Constraints()).selected == "a"
    sel2 = select_cut(cands[1:], None, Constraints())
    assert sel2.selected is None and "0.55" in sel2.reasons["b"]


def test_tie_goes_to_less_leakage_then_less_memory() -> None:
    cands = [ev("a", 10.0, ssim=0.3), ev("b", 10.1, ssim=0.1), ev("c", 10.05, ssim=0.1, mem=0.5)]
    sel = select_cut(cands, None, Constraints(tie_tolerance=0.02))
    assert sel.selected == "c"
    assert "tie on latency" in sel.reasons["a"] and "tie on latency" in sel.reasons["b"]
    sel = select_cut(cands, None, Constraints(tie_tolerance=0.0))
    assert sel.selected == "a"


def test_nothing_passes_recommends_defence_or_whole_model() -> None:
    cands = [ev("a", 5, ssim=0.9), ev("b", 8, ssim=0.7)]
    sel = select_cut(cands, None, Constraints())
    assert sel.selected is None and all(v.status is Status.REJECTED for v in sel.verdicts.values())
    assert sel.summary.startswith("No cut passes")
    assert "--defence adversarial" in sel.recommendation and "b" in sel.recommendation
    sel = select_cut(cands, WHOLE, Constraints())
    assert sel.selected == WHOLE_TRUSTED and "Keep the whole model trusted" in sel.summary


def test_memory_limited() -> None:
    cands = [ev("a", 5, mem=200), ev("b", 9, mem=50), ev("c", 7, mem=120)]
    big_whole = CutEvidence(WHOLE_TRUSTED, 30.0, 300 * MiB, {})
    sel = select_cut(cands, big_whole, Constraints())
    assert sel.selected == "b"
    assert any(isinstance(r, OverMemory) for r in sel.verdicts["a"].reasons)
    assert "over memory: the head needs 200.0 MiB > 93 MiB" in sel.reasons["a"]
    assert "over memory" in sel.reasons[WHOLE_TRUSTED]
    assert select_cut(cands, big_whole, Constraints(enforce_memory=False)).selected == "a"
    sel = select_cut([ev("a", 5, mem=200, ssim=0.9)], big_whole, Constraints())
    assert sel.selected is None and "exceeds the memory budget" in sel.recommendation


def test_tabular_feature_reconstruction_is_judged_the_other_way_round() -> None:
    leak = {"decoder": result("decoder", feature_mae=0.05)}
    safe = {"decoder": result("decoder", feature_mae=0.15)}
    cands = [CutEvidence("a", 1, 0, leak), CutEvidence("b", 2, 0, safe)]
    sel = select_cut(cands, None, Constraints())
    assert sel.selected == "b" and "feature MAE 0.050 < 0.100" in sel.reasons["a"]


def test_task_label_floor_raises_the_attribute_and_ssim_thresholds() -> None:
    # the label alone already gives 0.7 of the attribute: 0.75 adds nothing, 0.85 does
    def attr(acc: float) -> dict:
        return {"attribute": result("attribute", accuracy=acc,
                                    accuracy_base={"majority": 0.1, "task_floor": 0.7})}

    cands = [CutEvidence("a", 1, 0, attr(0.75)), CutEvidence("b", 0.5, 0, attr(0.85))]
    sel = select_cut(cands, None, Constraints())
    assert sel.selected == "a" and "0.85 > 0.80 (task-label floor 0.70)" in sel.reasons["b"]

    # the predicted label's prototype already scores 0.45: 0.5 adds nothing, 0.6 does
    def recon(v: float) -> dict:
        return {"decoder": result("decoder", ssim=v,
                                  ssim_base={"aux_mean": 0.2, "task_floor": 0.45})}

    cands = [CutEvidence("a", 1, 0, recon(0.5)), CutEvidence("b", 0.5, 0, recon(0.6))]
    sel = select_cut(cands, None, Constraints())
    assert sel.selected == "a" and "SSIM 0.60 > 0.55 (task-label floor 0.45)" in sel.reasons["b"]


def test_reidentification_breaks_a_cut_that_ssim_lets_pass() -> None:
    proto = {"decoder": result("decoder", ssim=0.35, reid=(0.93, 0.88, 0.97))}
    sel = select_cut([CutEvidence("a", 1, 0, proto)], None, Constraints())
    assert sel.selected is None
    assert "decoder: re-identification 0.93, 95% 0.88-0.97 > 0.20 (chance 0.10)" in (
        sel.reasons["a"]
    )
    lax = Constraints.from_options({"reid": 0.95})
    assert lax.limits["reid"] == Cap(0.95) and select_cut(
        [CutEvidence("a", 1, 0, proto)], None, lax
    ).selected == "a"


def test_an_interval_across_the_limit_is_borderline_either_way() -> None:
    close_pass = {"decoder": result("decoder", ssim=(0.38, 0.35, 0.43))}
    close_fail = {"decoder": result("decoder", ssim=(0.42, 0.37, 0.46))}
    clear = {"decoder": result("decoder", ssim=(0.2, 0.18, 0.22))}
    sel = select_cut([CutEvidence("a", 1, 0, close_pass), CutEvidence("b", 0.5, 0, close_fail),
                      CutEvidence("c", 2, 0, clear)], None, Constraints())  # fmt: skip
    a, b, c = (sel.verdicts[k] for k in "abc")
    assert sel.selected == "a" and a.borderline and not a.breaches
    assert "borderline: decoder: SSIM 0.38, 95% 0.35-0.43 <= 0.40" in a.text
    assert "Borderline" in sel.summary
    assert b.status is Status.REJECTED and b.borderline and "(borderline)" in b.text
    assert not c.borderline


def test_selection_roundtrips_through_json() -> None:
    sel = select_cut([ev("a", 5, ssim=0.9), ev("b", 9, mem=200), ev("c", 7)], WHOLE,
                     Constraints.from_options({"ssim": 0.5, "reid": 0.3}))
    back = Selection.from_dict(json.loads(json.dumps(sel.to_dict())))
    assert back.verdicts == sel.verdicts and back.constraints == sel.constraints
    assert back.reasons == sel.reasons
    assert isinstance(back.verdicts["a"].reasons[0], Breach)


def test_one_clear_breach_is_not_borderline_and_the_short_text_names_the_worst() -> None:
    mixed = {"decoder": result("decoder", ssim=(0.9, 0.88, 0.92), reid=(0.21, 0.15, 0.27)),
             "cgan": result("cgan", ssim=(0.42, 0.37, 0.46))}  # fmt: skip
    v = select_cut([CutEvidence("a", 1, 0, mixed)], None, Constraints()).verdicts["a"]
    assert len(v.breaches) == 3 and not v.borderline
    assert v.short == "broken: decoder: SSIM 0.90, 95% 0.88-0.92 > 0.40 (floor) (+2 more)"
    assert v.text.count(";") == 2 and "borderline" not in v.short
