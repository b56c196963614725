"""Which cuts to attack, and which verdicts follow from others: the audit's cut search.

Why it can skip cuts: the features at a shallower cut determine those at every deeper cut (the
layers between are a fixed function). A white-box attacker holds those layers (head and tail
weights) and everything any other threat model grants (queries, auxiliary data and its
attributes), so whatever any attack achieves at a deeper cut, a white-box attacker can achieve
at a shallower one (data processing). Hence, when white-box attackers are judged:

- a breach at cut j, by any attack, implies that every cut before j is broken;
- when no white-box attack breaks cut i, none breaks any cut after i, so white-box attacks are
  not run there (the other threat models' attacks still are: their attacker does not hold the
  layers, so their figures at i say nothing about j).

So the broken cuts are a prefix of the topological order. `monotone` finds its end by probing
the deepest cut first, then bisecting; then it runs the other threat models' attacks on the
cuts left safe, deepest first (a breach there moves the end of the prefix, and the search goes
on). The implication bounds the attacker's best possible attack, not any one attack's figures,
so a cut decided by implication gets a verdict and no figures.

Without any white-box attack the implication does not hold and `monotone` is refused in favour
of `exhaustive` (every attack at every cut); the caller says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from privpart.selection import Implied


class Search(StrEnum):
    MONOTONE = "monotone"  # bisect the broken prefix; other verdicts by implication
    EXHAUSTIVE = "exhaustive"  # attack every candidate cut


@dataclass(frozen=True)
class CutAudit:
    """What attacking one cut did: the attacks that ran there and those that broke it."""

    ran: tuple[str, ...]
    broken_by: tuple[str, ...] = ()


AuditCut = Callable[[int, list[str]], CutAudit]  # (cut index, attacks to run) -> what happened


@dataclass
class SearchOutcome:
    """Per cut (by index): attacks run, direct breakers, verdicts by implication; probe order."""

    ran: dict[int, set[str]]
    broken_by: dict[int, set[str]]
    implied: dict[int, list[Implied]] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)

    @property
    def cut_audits(self) -> int:
        """How many times a cut was attacked (a cut visited twice counts twice)."""
        return len(self.order)


def exhaustive(n: int, attacks: Sequence[str], audit_cut: AuditCut) -> SearchOutcome:
    """Every cut, shallow to deep, with every attack (the caller may still stop a cut early).
    With no attack left to run (every one was skipped as not applying), no cut is visited."""
    out = SearchOutcome({i: set() for i in range(n)}, {i: set() for i in range(n)})
    if not attacks:  # none applies to the target (each says why): no cut is attacked
        return out
    for i in range(n):
        _visit(out, i, list(attacks), audit_cut)
    return out


def monotone(
    names: Sequence[str], attacks: Sequence[str], white_box: set[str], audit_cut: AuditCut
) -> SearchOutcome:
    """The broken prefix of `names` (topological order) and every verdict it implies."""
    if not white_box & set(attacks):
        raise ValueError("monotone search needs a white-box attack among the attacks")
    n = len(names)
    out = SearchOutcome({i: set() for i in range(n)}, {i: set() for i in range(n)})
    wb = white_box & set(attacks)
    while True:
        lo = 1 + max((i for i in range(n) if out.broken_by[i]), default=-1)
        if lo == n:
            break
        # the shallowest cut past the broken prefix where every white-box attack ran (unbroken)
        w = min((i for i in range(lo, n) if wb <= out.ran[i]), default=n)
        if lo < w:  # white-box verdicts in [lo, w) unknown: probe the deepest first, then bisect
            m = n - 1 if w == n else (lo + w) // 2
            _visit(out, m, [a for a in attacks if a not in out.ran[m]], audit_cut)
            continue
        # every cut from lo on is safe against white-box attacks; the others run, deepest first
        todo = [i for i in range(lo, n) if set(attacks) - wb - out.ran[i]]
        if not todo:
            break
        j = todo[-1]
        _visit(out, j, [a for a in attacks if a not in wb and a not in out.ran[j]], audit_cut)
    _imply(out, list(names), wb, lo)
    return out


def _visit(out: SearchOutcome, i: int, attacks: list[str], audit_cut: AuditCut) -> None:
    done = audit_cut(i, attacks)
    if not done.ran:
        raise RuntimeError(f"the attack scheduler ran nothing at cut {i} of {attacks}")
    out.ran[i] |= set(done.ran)
    out.broken_by[i] |= set(done.broken_by)
    out.order.append(i)


def _imply(out: SearchOutcome, names: list[str], wb: set[str], lo: int) -> None:
    """Verdicts by implication: before `lo` from the nearest deeper broken cut; from `lo` on,
    white-box attacks not run from the nearest shallower cut where they all ran."""
    for i in range(len(names)):
        if i < lo and not out.broken_by[i]:
            j = next(k for k in range(i + 1, len(names)) if out.broken_by[k])
            out.implied[i] = [Implied(names[j], True, tuple(sorted(out.broken_by[j])))]
        elif i >= lo and (missing := wb - out.ran[i]):
            k = max(k for k in range(lo, i) if wb <= out.ran[k])
            out.implied[i] = [Implied(names[k], False, tuple(sorted(missing)))]
