"""Pick the fastest cut no attack breaks, and say why every other candidate lost.

Each attack result carries its metrics' declarations (direction, baselines, limit rule), so
judging is the same loop for every metric: limit from the rule (or the user's override) and the
result's baselines; past it is a breach; a 95 % interval that reaches across it makes the
verdict borderline either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from privpart.attacks.result import AttackResult, MetricResult
from privpart.selection.constraints import Constraints
from privpart.selection.verdict import (
    Breach,
    Fastest,
    Implied,
    OverMemory,
    Reason,
    Slower,
    Status,
    TieLost,
    Verdict,
)

WHOLE_TRUSTED = "whole model trusted"


@dataclass(frozen=True)
class CutEvidence:
    """What selection needs to know about one candidate (built from audit results)."""

    cut: str
    total_ms: float
    memory_bytes: int
    attacks: Mapping[str, AttackResult] = field(default_factory=dict)
    implied: tuple[Implied, ...] = ()  # verdicts taken from other cuts (monotone search)

    @property
    def implied_broken(self) -> bool:
        return any(r.broken for r in self.implied)


@dataclass
class Selection:
    selected: str | None
    verdicts: dict[str, Verdict]  # every candidate, the selected one included
    summary: str
    recommendation: str
    constraints: Constraints

    @property
    def reasons(self) -> dict[str, str]:
        """Why each candidate but the selected one lost, in words."""
        return {c: v.text for c, v in self.verdicts.items() if v.status is not Status.SELECTED}

    def to_dict(self) -> dict[str, Any]:
        return {
            "selected": self.selected,
            "verdicts": {k: v.to_dict() for k, v in self.verdicts.items()},
            "summary": self.summary,
            "recommendation": self.recommendation,
            "constraints": self.constraints.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Selection:
        return cls(
            d.get("selected"),
            {k: Verdict.from_dict(v) for k, v in d["verdicts"].items()},
            str(d.get("summary", "")),
            str(d.get("recommendation", "")),
            Constraints.from_dict(d.get("constraints", {})),
        )


def judge(result: AttackResult, m: MetricResult, c: Constraints) -> Breach | None:
    """A breach, a borderline pass, or None (judged and clearly safe, or not judged)."""
    spec = m.spec
    rule = c.rule(spec)
    if rule is None or m.value != m.value:  # not judged, or undefined (NaN)
        return None
    limit = rule.limit(spec, m.baselines)
    chance = m.baselines.get(spec.chance) if spec.chance else None
    breach = Breach(
        attack=result.attack,
        threat_model=str(result.threat_model),
        metric=spec.name,
        label=spec.label,
        value=m.value,
        limit=limit.value,
        reference=limit.reference,
        direction=spec.direction,
        fmt=spec.fmt,
        interval=m.estimate.interval,
        chance=chance,
    )
    if spec.direction.beyond(m.value, limit.value):
        return breach
    if breach.borderline:
        return replace(breach, passed=True)
    return None


def judge_cut(ev: CutEvidence, c: Constraints) -> list[Breach]:
    """Every breach and borderline pass of one candidate, attack by attack."""
    found = []
    for _, result in sorted(ev.attacks.items()):
        for m in result.metrics.values():
            b = judge(result, m, c)
            if b is not None:
                found.append(b)
    return found


def leakage_score(ev: CutEvidence, c: Constraints | None = None) -> float:
    """How far the most revealing judged figure is past (>0) or short of (<0) its limit, in
    its own units: orders passing candidates for ties and draws the privacy axis of plots."""
    c = c or Constraints()
    worst = float("-inf")
    for result in ev.attacks.values():
        for m in result.metrics.values():
            rule = c.rule(m.spec)
            if rule is None or m.value != m.value:
                continue
            limit = rule.limit(m.spec, m.baselines).value
            worst = max(worst, m.spec.direction.leak_margin(m.value, limit))
    return worst if worst != float("-inf") else 0.0


def select_cut(
    candidates: list[CutEvidence], whole_trusted: CutEvidence | None, c: Constraints
) -> Selection:
    """Fastest passing candidate; `whole_trusted` (no cut, nothing leaves but logits) competes too.

    Ties (latency within `tie_tolerance`) go to the lower worst-case leakage, then the smaller
    head memory.
    """
    reasons: dict[str, list[Reason]] = {}
    passing: list[CutEvidence] = []
    pool = [*candidates, *([whole_trusted] if whole_trusted else [])]
    for ev in pool:
        found = judge_cut(ev, c)
        broken = any(not b.passed for b in found) or ev.implied_broken
        over = c.enforce_memory and ev.memory_bytes > c.memory_budget_bytes
        reasons[ev.cut] = [*ev.implied, *found]
        if over:
            reasons[ev.cut].append(OverMemory(ev.memory_bytes, c.memory_budget_bytes))
        if not broken and not over:
            passing.append(ev)

    if not passing:
        verdicts = {ev.cut: Verdict(ev.cut, Status.REJECTED, tuple(reasons[ev.cut])) for ev in pool}
        return Selection(
            None,
            verdicts,
            f"No cut passes: all {len(candidates)} audited cuts are broken or over memory.",
            _nothing_recommendation(candidates, whole_trusted, c),
            c,
        )

    fastest = min(ev.total_ms for ev in passing)
    tied = [ev for ev in passing if ev.total_ms <= fastest * (1 + c.tie_tolerance)]
    best = min(tied, key=lambda ev: (leakage_score(ev, c), ev.memory_bytes, ev.total_ms))
    verdicts: dict[str, Verdict] = {}
    for ev in pool:
        if ev is best:
            status, extra = Status.SELECTED, [Fastest(ev.total_ms)]
        elif ev in tied:
            status, extra = Status.PASSES, [TieLost(ev.total_ms, best.total_ms, best.cut)]
        elif ev in passing:
            status, extra = Status.PASSES, [Slower(ev.total_ms, best.total_ms, best.cut)]
        else:
            status, extra = Status.REJECTED, []
        verdicts[ev.cut] = Verdict(ev.cut, status, (*extra, *reasons[ev.cut]))
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
    if verdicts[best.cut].borderline:
        summary += " Borderline: a figure's 95% interval reaches its limit (re-run with --confirm)."
    return Selection(best.cut, verdicts, summary, "", c)


def _nothing_recommendation(
    candidates: list[CutEvidence], whole_trusted: CutEvidence | None, c: Constraints
) -> str:
    fits = [ev for ev in candidates if ev.memory_bytes <= c.memory_budget_bytes]
    fits = [ev for ev in fits if ev.attacks] or fits  # cuts with figures: leakage is measured
    parts = []
    if fits:
        target = min(fits, key=lambda ev: (leakage_score(ev, c), ev.total_ms))
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
