"""Which cuts to attack, and which verdicts follow from others: the audit's cut search.

Why it can skip cuts: the features at a shallower cut determine those at every deeper cut (the
layers between are a fixed function). A white-box attacker holds those layers (head and tail
weights) and everything any other threat model grants (queries, auxiliary data and its
attributes), so whatever any attack achieves at a deeper cut, a white-box attacker can achieve
at a shallower one (data processing). Hence, when white-box attackers are judged:

- a clear breach at cut j (its 95 % interval wholly past the limit), by any attack, implies
  that every cut before j is broken; a borderline breach decides only its own cut, since the
  true leakage may sit at the limit at every cut and a shallower cut must then be judged on
  its own figures (treating it as implied would make the verdict depend on one noisy figure);
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
    """What attacking one cut did: the attacks that ran there, those that broke it, and which
    of those breaches were borderline (95 % interval reaching the limit)."""

    ran: tuple[str, ...]
    broken_by: tuple[str, ...] = ()
    borderline_by: tuple[str, ...] = ()

    @property
    def clear_by(self) -> tuple[str, ...]:
        return tuple(a for a in self.broken_by if a not in self.borderline_by)


AuditCut = Callable[[int, list[str]], CutAudit]  # (cut index, attacks to run) -> what happened


@dataclass
class SearchOutcome:
    """Per cut (by index): attacks run, direct breakers, verdicts by implication; probe order."""

    ran: dict[int, set[str]]
    broken_by: dict[int, set[str]]
    implied: dict[int, list[Implied]] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    clear_by: dict[int, set[str]] = field(default_factory=dict)  # breaches past the interval

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
    out = SearchOutcome({i: set() for i in range(n)}, {i: set() for i in range(n)},
                        clear_by={i: set() for i in range(n)})  # fmt: skip
    wb = white_box & set(attacks)
    while True:
        lo = 1 + max((i for i in range(n) if out.clear_by[i]), default=-1)
        if lo == n:
            break
        # the shallowest cut past the clearly broken prefix that every white-box attack left
        # unbroken; a cut a white-box attack broke only borderline decides nothing beyond itself
        w = min((i for i in range(lo, n) if _wb_safe(out, i, wb)), default=n)
        unknown = [i for i in range(lo, w) if not wb <= out.ran[i]]
        if unknown:  # white-box verdicts unknown: probe the deepest first, then bisect
            m = n - 1 if w == n and n - 1 in unknown else unknown[len(unknown) // 2]
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


def _wb_safe(out: SearchOutcome, i: int, wb: set[str]) -> bool:
    """Every white-box attack ran at cut i and none broke it."""
    return wb <= out.ran[i] and not wb & out.broken_by[i]


def _visit(out: SearchOutcome, i: int, attacks: list[str], audit_cut: AuditCut) -> None:
    done = audit_cut(i, attacks)
    if not done.ran:
        raise RuntimeError(f"the attack scheduler ran nothing at cut {i} of {attacks}")
    out.ran[i] |= set(done.ran)
    out.broken_by[i] |= set(done.broken_by)
    out.clear_by.setdefault(i, set()).update(done.clear_by)
    out.order.append(i)


def _imply(out: SearchOutcome, names: list[str], wb: set[str], lo: int) -> None:
    """Verdicts by implication: before `lo` from the nearest deeper clearly broken cut; from
    `lo` on, white-box attacks not run from the nearest shallower cut they all left unbroken."""
    for i in range(len(names)):
        if i < lo and not out.broken_by[i]:  # a cut with its own breach keeps its figures
            j = next(k for k in range(i + 1, len(names)) if out.clear_by[k])
            out.implied[i] = [Implied(names[j], True, tuple(sorted(out.clear_by[j])))]
        elif i >= lo and (missing := wb - out.ran[i]):
            k = max(k for k in range(lo, i) if _wb_safe(out, k, wb))
            out.implied[i] = [Implied(names[k], False, tuple(sorted(missing)))]
