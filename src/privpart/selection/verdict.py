"""A cut's verdict as data: its status and every reason, each a typed record that also says
itself in words. Reports and the CLI read these, never parse a sentence."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any, ClassVar

from privpart.metrics.spec import Direction, Interval
from privpart.registry import Registry


class Status(StrEnum):
    SELECTED = "selected"  # the fastest cut no attack breaks
    PASSES = "passes"  # no attack breaks it, but another candidate won
    REJECTED = "rejected"  # broken by an attack, or over the memory budget


REASONS: Registry[type[Reason]] = Registry("verdict reason")


class Reason:
    """One reason in a verdict; subclasses are dataclasses registered by `kind`."""

    kind: ClassVar[str]

    @property
    def text(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)  # type: ignore[call-overload]
        return {"kind": self.kind, **d}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Reason:
        cls = REASONS.get(str(d["kind"]))
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        values = {k: v for k, v in d.items() if k in names}
        if "interval" in values and values["interval"] is not None:
            values["interval"] = Interval(**values["interval"])
        if "attacks" in values:
            values["attacks"] = tuple(values["attacks"])
        if "direction" in values:
            values["direction"] = Direction(values["direction"])
        return cls(**values)


def _fmt(x: float, fmt: str) -> str:
    return f"{x:{fmt}}"


@REASONS.register("breach")
@dataclass(frozen=True)
class Breach(Reason):
    """An attack's figure past its limit (or, with `passed`, a figure short of it whose interval
    reaches it: a borderline pass)."""

    attack: str
    threat_model: str
    metric: str
    label: str
    value: float
    limit: float
    reference: str  # what the limit came from ("task-label floor 0.45", "cap")
    direction: Direction
    fmt: str = ".2f"
    interval: Interval | None = None
    chance: float | None = None
    passed: bool = False  # True: not a breach, recorded because it is borderline
    kind: ClassVar[str] = "breach"

    @property
    def borderline(self) -> bool:
        """The 95 % interval reaches across the limit: another sample of victims could flip it."""
        return self.interval is not None and self.interval.contains(self.limit)

    @property
    def text(self) -> str:
        f = self.fmt
        sign = (">" if self.direction is Direction.HIGHER else "<") if not self.passed else (
            "<=" if self.direction is Direction.HIGHER else ">=")  # fmt: skip
        iv = self.interval
        ci = f", 95% {_fmt(iv.low, f)}-{_fmt(iv.high, f)}" if iv is not None else ""
        chance = (
            f", chance {self.chance:.2f}"
            if self.chance is not None and not self.reference.startswith("chance")
            else ""
        )
        head = f"{self.attack}: {self.label} {_fmt(self.value, f)}{ci} {sign} {_fmt(self.limit, f)}"
        tag = " (borderline)" if self.borderline else ""
        ref = f" ({self.reference}{chance})" if self.reference else ""
        return f"{head}{ref}{tag}"


@REASONS.register("over_memory")
@dataclass(frozen=True)
class OverMemory(Reason):
    need_bytes: int
    budget_bytes: int
    kind: ClassVar[str] = "over_memory"

    @property
    def text(self) -> str:
        return (
            f"over memory: the head needs {self.need_bytes / 2**20:.1f} MiB > "
            f"{self.budget_bytes / 2**20:.0f} MiB budget"
        )


@REASONS.register("slower")
@dataclass(frozen=True)
class Slower(Reason):
    total_ms: float
    best_ms: float
    best: str
    kind: ClassVar[str] = "slower"

    @property
    def text(self) -> str:
        ms = f"{self.total_ms:.2f} ms vs {self.best_ms:.2f} ms"
        return f"passes, but slower: {ms} for {self.best}"


@REASONS.register("tie_lost")
@dataclass(frozen=True)
class TieLost(Reason):
    total_ms: float
    best_ms: float
    best: str
    kind: ClassVar[str] = "tie_lost"

    @property
    def text(self) -> str:
        return (
            f"tie on latency ({self.total_ms:.2f} ms vs {self.best_ms:.2f} ms) lost on "
            f"leakage/memory to {self.best}"
        )


@REASONS.register("fastest")
@dataclass(frozen=True)
class Fastest(Reason):
    total_ms: float
    kind: ClassVar[str] = "fastest"

    @property
    def text(self) -> str:
        return f"the fastest cut that no attack breaks ({self.total_ms:.2f} ms)"


@REASONS.register("implied")
@dataclass(frozen=True)
class Implied(Reason):
    """A verdict this cut takes from another cut, with no figures of its own.

    The features at a shallower cut determine those at every deeper one (the layers between
    are a fixed function), so a white-box attacker, who holds those layers and everything any
    other threat model grants, does at least as well at the shallower cut. `broken`: `by` is a
    deeper cut some attack broke, so this one is broken too. Otherwise `by` is a shallower cut
    that `attacks` (the white-box ones) did not break, so they are not run here either. The
    argument bounds the attacker's best attack, not any one attack's figures: none are made up.
    """

    by: str
    broken: bool
    attacks: tuple[str, ...] = ()
    kind: ClassVar[str] = "implied"

    @property
    def text(self) -> str:
        if self.broken:
            return f"implied by {self.by}, whose features it determines"
        names = ", ".join(self.attacks)
        return f"{names} not run: implied safe by {self.by}, whose features determine this cut's"


@REASONS.register("note")
@dataclass(frozen=True)
class Note(Reason):
    """Free text: reasons carried over from results written before verdicts were typed."""

    message: str
    kind: ClassVar[str] = "note"

    @property
    def text(self) -> str:
        return self.message


@dataclass(frozen=True)
class Verdict:
    cut: str
    status: Status
    reasons: tuple[Reason, ...] = ()

    @property
    def breaches(self) -> list[Breach]:
        return [r for r in self.reasons if isinstance(r, Breach) and not r.passed]

    @property
    def implied_breach(self) -> Implied | None:
        """The deeper cut this one is broken by implication from, if it is."""
        return next((r for r in self.reasons if isinstance(r, Implied) and r.broken), None)

    @property
    def broken(self) -> bool:
        """Broken by a figure of its own or by implication from a deeper cut."""
        return bool(self.breaches) or self.implied_breach is not None

    @property
    def borderline(self) -> bool:
        """Another sample of victims could flip it: broken only by figures whose 95 % interval
        reaches back to their limit, or passing with a figure whose interval reaches its limit.
        A cut with one clear breach is not borderline, however many close calls it has."""
        close = [r for r in self.reasons if isinstance(r, Breach) and r.borderline]
        return bool(close) and all(b.borderline for b in self.breaches)

    @property
    def worst(self) -> Breach | None:
        """The breach furthest past its limit (or, for a pass, the closest call)."""
        found = self.breaches or [r for r in self.reasons if isinstance(r, Breach)]
        return max(found, key=lambda b: b.direction.leak_margin(b.value, b.limit), default=None)

    @property
    def text(self) -> str:
        """Every reason in words."""
        implied = self.implied_breach
        others = [r.text for r in self.reasons if not isinstance(r, Breach) and r is not implied]
        lead = [implied.text] if implied is not None else []
        parts = [*lead, *(b.text for b in self.breaches), *others]
        shown = ("broken: " if self.broken else "") + "; ".join(parts)
        close = [r for r in self.reasons if isinstance(r, Breach) and r.passed]
        if close and not self.breaches:
            shown += ("; " if shown else "") + "borderline: " + "; ".join(r.text for r in close)
        return shown

    @property
    def short(self) -> str:
        """One line: the decisive reason, and how many more there are."""
        lead = [r for r in self.reasons if not isinstance(r, Breach)]
        worst = self.worst
        implied = self.implied_breach
        if implied is not None and not self.breaches:
            return "broken: " + implied.text
        if self.breaches and worst is not None:
            more = len(self.breaches) - 1
            extra = f" (+{more} more)" if more else ""
            parts = [r.text for r in lead if not isinstance(r, Slower | TieLost | Fastest)]
            return "; ".join(["broken: " + worst.text + extra, *parts])
        text = "; ".join(r.text for r in lead)
        if worst is not None:
            text += ("; " if text else "") + "borderline: " + worst.text
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "cut": self.cut,
            "status": self.status.value,
            "reasons": [r.to_dict() for r in self.reasons],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        return cls(
            str(d["cut"]), Status(d["status"]), tuple(Reason.from_dict(r) for r in d["reasons"])
        )
