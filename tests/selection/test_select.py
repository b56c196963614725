from __future__ import annotations

from privpart.selection import WHOLE_TRUSTED, Constraints, CutEvidence, select_cut

MiB = 2**20


def recon(ssim: float, base: float = 0.2) -> dict:
    return {"metrics": {"ssim": ssim, "psnr": 10.0}, "baselines": {"ssim": base, "psnr": 8.0}}


def attr(acc: float, base: float = 0.3) -> dict:
    return {"metrics": {"accuracy": acc}, "baselines": {"accuracy": base}}


def ev(cut: str, ms: float, mem: float = 1, ssim: float = 0.1, acc: float = 0.3) -> CutEvidence:
    return CutEvidence(cut, ms, int(mem * MiB), {"cgan": recon(ssim), "attribute": attr(acc)})


WHOLE = CutEvidence(WHOLE_TRUSTED, 100.0, 50 * MiB, {})


def test_fastest_passing_cut_wins_and_every_loser_has_a_reason() -> None:
    cands = [ev("a", 5, ssim=0.9), ev("b", 8, acc=0.8), ev("c", 12), ev("d", 20)]
    sel = select_cut(cands, WHOLE, Constraints())
    assert sel.selected == "c"
    assert "cgan reconstructs inputs (SSIM 0.90 > 0.40" in sel.reasons["a"]
    assert "attribute infers the private attribute (accuracy 0.80 > 0.40" in sel.reasons["b"]
    assert "slower: 20.00 ms vs 12.00 ms for c" in sel.reasons["d"]
    assert "slower" in sel.reasons[WHOLE_TRUSTED]
    assert set(sel.reasons) == {"a", "b", "d", WHOLE_TRUSTED}
    assert sel.summary.startswith("Cut at c")


def test_baseline_raises_the_ssim_threshold() -> None:
    # the aux-mean image already scores 0.45: 0.5 is no real leak, 0.6 is
    cands = [
        CutEvidence("a", 1, 0, {"decoder": recon(0.5, base=0.45)}),
        CutEvidence("b", 2, 0, {"decoder": recon(0.6, base=0.45)}),
    ]
    sel = select_cut(cands, None, Constraints())
    assert sel.selected == "a"
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
    assert sel.selected is None
    assert sel.summary.startswith("No cut passes")
    assert "--defence adversarial" in sel.recommendation and "b" in sel.recommendation
    sel = select_cut(cands, WHOLE, Constraints())
    assert sel.selected == WHOLE_TRUSTED and "Keep the whole model trusted" in sel.summary


def test_memory_limited() -> None:
    cands = [ev("a", 5, mem=200), ev("b", 9, mem=50), ev("c", 7, mem=120)]
    big_whole = CutEvidence(WHOLE_TRUSTED, 30.0, 300 * MiB, {})
    sel = select_cut(cands, big_whole, Constraints())
    assert sel.selected == "b"
    assert "over memory: the head needs 200.0 MiB > 93 MiB" in sel.reasons["a"]
    assert "over memory" in sel.reasons[WHOLE_TRUSTED]
    sel = select_cut(cands, big_whole, Constraints(enforce_memory=False))
    assert sel.selected == "a"
    sel = select_cut([ev("a", 5, mem=200, ssim=0.9)], big_whole, Constraints())
    assert sel.selected is None and "exceeds the memory budget" in sel.recommendation


def test_tabular_feature_reconstruction() -> None:
    leak = {"metrics": {"feature_mae": 0.05}, "baselines": {"feature_mae": 0.2}}
    safe = {"metrics": {"feature_mae": 0.15}, "baselines": {"feature_mae": 0.2}}
    sel = select_cut(
        [CutEvidence("a", 1, 0, {"decoder": leak}), CutEvidence("b", 2, 0, {"decoder": safe})],
        None,
        Constraints(),
    )
    assert sel.selected == "b" and "recovers features (MAE 0.050 < 0.100" in sel.reasons["a"]


def test_task_label_floor_raises_the_attribute_threshold() -> None:
    # the label alone already gives 0.7 of the attribute: 0.75 adds nothing, 0.85 does
    def floored(acc: float) -> dict:
        return {"metrics": {"accuracy": acc}, "baselines": {"accuracy": 0.1, "task_floor": 0.7}}

    cands = [CutEvidence("a", 1, 0, {"attribute": floored(0.75)}),
             CutEvidence("b", 0.5, 0, {"attribute": floored(0.85)})]  # fmt: skip
    sel = select_cut(cands, None, Constraints())
    assert sel.selected == "a"
    assert "accuracy 0.85 > 0.80; task-label floor 0.70" in sel.reasons["b"]


def test_task_label_floor_raises_the_ssim_threshold() -> None:
    # the predicted label's prototype already scores 0.45: 0.5 adds nothing, 0.6 does
    def floored(value: float) -> dict:
        return {"metrics": {"ssim": value}, "baselines": {"ssim": 0.2, "task_floor_ssim": 0.45}}

    cands = [CutEvidence("a", 1, 0, {"decoder": floored(0.5)}),
             CutEvidence("b", 0.5, 0, {"decoder": floored(0.6)})]  # fmt: skip
    sel = select_cut(cands, None, Constraints())
    assert sel.selected == "a"
    assert "SSIM 0.60 > 0.55; task-label floor 0.45" in sel.reasons["b"]
    assert Constraints().ssim_limit("decoder", 0.2) == 0.4  # no floor: the absolute cap
