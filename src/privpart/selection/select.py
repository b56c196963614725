"""Pick the fastest cut no attack breaks, and say why every other candidate lost."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from privpart.selection.constraints import Constraints

WHOLE_TRUSTED = "whole model trusted"


@dataclass(frozen=True)
class CutEvidence:
    """What selection needs to know about one candidate (built from audit results)."""

    cut: str
    total_ms: float
    memory_bytes: int
    # attack name -> {"metrics": {...}, "baselines": {...}, "threat_model": str}
    attacks: dict[str, dict] = field(default_factory=dict)


@dataclass
class Breach:
    attack: str
    metric: str
    value: float
    limit: float
    text: str


@dataclass
class Selection:
    selected: str | None
    reasons: dict[str, str]  # every candidate but the selected -> why it lost
    breaches: dict[str, list[dict]]
    summary: str
    recommendation: str
    constraints: dict

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Selection:
        return cls(**d)


def leakage_score(ev: CutEvidence) -> float:
    """The worst normalised leakage over attacks: used only to break latency ties."""
    worst = 0.0
    for res in ev.attacks.values():
        m, b = res["metrics"], res["baselines"]
        if "ssim" in m:
            worst = max(worst, m["ssim"])
        if "accuracy" in m:
            worst = max(worst, m["accuracy"] - b.get("accuracy", 0.0))
        if "feature_mae" in m and b.get("feature_mae"):
            worst = max(worst, 1 - m["feature_mae"] / b["feature_mae"])
    return worst


def breaches(ev: CutEvidence, c: Constraints) -> list[Breach]:
    """Every attack that breaks this cut under the constraints, with its figure."""
    out: list[Breach] = []
    for name, res in sorted(ev.attacks.items()):
        m, b = res["metrics"], res["baselines"]
        if "ssim" in m:
            base, floor = b.get("ssim", 0.0), b.get("task_floor_ssim", 0.0)
            limit = c.ssim_limit(name, base, floor)
            which = f"task-label floor {floor:.2f}" if floor > base else f"baseline {base:.2f}"
            if m["ssim"] > limit:
                out.append(
                    Breach(
                        name,
                        "ssim",
                        m["ssim"],
                        limit,
                        f"{name} reconstructs inputs (SSIM {m['ssim']:.2f} > {limit:.2f}; {which})",
                    )
                )
        if "feature_mae" in m and "feature_mae" in b:
            limit = c.max_mae_ratio * b["feature_mae"]
            if m["feature_mae"] < limit:
                out.append(
                    Breach(
                        name,
                        "feature_mae",
                        m["feature_mae"],
                        limit,
                        f"{name} recovers features (MAE {m['feature_mae']:.3f} < "
                        f"{limit:.3f}; baseline {b['feature_mae']:.3f})",
                    )
                )
        if "accuracy" in m:
            # What the task label reveals leaks at every cut (the tail computes the prediction):
            # a cut is judged on what it adds beyond the larger of the two baselines.
            base = max(b.get("accuracy", 0.0), b.get("task_floor", 0.0))
            floor = b.get("task_floor", 0.0) > b.get("accuracy", 0.0)
            which = "task-label floor" if floor else "majority baseline"
            limit = base + c.max_attribute_advantage
            if m["accuracy"] > limit:
                out.append(
                    Breach(
                        name,
                        "accuracy",
                        m["accuracy"],
                        limit,
                        f"{name} infers the private attribute (accuracy "
                        f"{m['accuracy']:.2f} > {limit:.2f}; {which} {base:.2f})",
                    )
                )
    return out


def select_cut(
    candidates: list[CutEvidence], whole_trusted: CutEvidence | None, c: Constraints
) -> Selection:
    """Fastest passing candidate; `whole_trusted` (no cut, nothing leaves but logits) competes too.

    Ties (latency within `tie_tolerance`) go to the lower worst-case leakage, then the smaller
    head memory.
    """
    reasons: dict[str, str] = {}
    found: dict[str, list[dict]] = {}
    passing: list[CutEvidence] = []
    pool = [*candidates, *([whole_trusted] if whole_trusted else [])]
    for ev in pool:
        broken = breaches(ev, c)
        found[ev.cut] = [asdict(b) for b in broken]
        over = c.enforce_memory and ev.memory_bytes > c.memory_budget_bytes
        if broken:
            reasons[ev.cut] = "broken: " + "; ".join(b.text for b in broken)
        if over:
            mem = (
                f"over memory: the head needs {ev.memory_bytes / 2**20:.1f} MiB > "
                f"{c.memory_budget_bytes / 2**20:.0f} MiB budget"
            )
            reasons[ev.cut] = f"{reasons[ev.cut]}; {mem}" if ev.cut in reasons else mem
        if not broken and not over:
            passing.append(ev)

    if not passing:
        return Selection(
            None,
            reasons,
            found,
            _nothing_summary(candidates),
            _nothing_recommendation(candidates, whole_trusted, c),
            c.to_dict(),
        )

    fastest = min(ev.total_ms for ev in passing)
    tied = [ev for ev in passing if ev.total_ms <= fastest * (1 + c.tie_tolerance)]
    best = min(tied, key=lambda ev: (leakage_score(ev), ev.memory_bytes, ev.total_ms))
    for ev in passing:
        if ev is best:
            continue
        if ev in tied:
            reasons[ev.cut] = (
                f"tie on latency ({ev.total_ms:.2f} ms vs {best.total_ms:.2f} ms) "
                f"lost on leakage/memory"
            )
        else:
            reasons[ev.cut] = (
                f"passes, but slower: {ev.total_ms:.2f} ms vs {best.total_ms:.2f} ms for {best.cut}"
            )
    if best.cut == WHOLE_TRUSTED:
        summary = (
            f"Keep the whole model trusted ({best.total_ms:.1f} ms): no cut is both safe "
            f"and faster."
        )
    else:
        summary = (
            f"Cut at {best.cut}: the fastest cut no attack breaks "
            f"({best.total_ms:.1f} ms end to end)."
        )
    return Selection(best.cut, reasons, found, summary, "", c.to_dict())


def _nothing_summary(candidates: list[CutEvidence]) -> str:
    return f"No cut passes: all {len(candidates)} audited cuts are broken or over memory."


def _nothing_recommendation(
    candidates: list[CutEvidence], whole_trusted: CutEvidence | None, c: Constraints
) -> str:
    fits = [ev for ev in candidates if ev.memory_bytes <= c.memory_budget_bytes]
    parts = []
    if fits:
        target = min(fits, key=lambda ev: (leakage_score(ev), ev.total_ms))
        parts.append(
            f"train a defended head at {target.cut} (`privpart audit ... --defence "
            f"adversarial --defence-cut {target.cut}`) and re-audit"
        )
    if whole_trusted is not None:
        if whole_trusted.memory_bytes <= c.memory_budget_bytes or not c.enforce_memory:
            parts.append(f"or keep the whole model trusted ({whole_trusted.total_ms:.1f} ms)")
        else:
            parts.append(
                "keeping the whole model trusted exceeds the memory budget; use a "
                "larger enclave (SGX2/TDX) or a smaller model"
            )
    return "; ".join(parts) or "audit deeper cuts (`--cuts all`)"
