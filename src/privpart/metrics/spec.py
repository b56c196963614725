"""What a leakage figure means, declared once: its direction, its baselines, how a limit is
derived from them, and the figure with its uncertainty.

Attacks declare `Metric`s (`privpart.metrics.metric`) whose serialisable part is a
`MetricSpec`; every later stage (selection, report, CLI) reads the spec carried by each result,
never a metric's name. A new attack with a new metric therefore touches its own file only.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, ClassVar

from privpart.registry import Registry


class Direction(StrEnum):
    """Which way a figure leaks: higher SSIM or accuracy reveals more, higher error reveals less."""

    HIGHER = "higher"
    LOWER = "lower"

    def beyond(self, value: float, limit: float) -> bool:
        """Whether `value` is past `limit` on the leaking side (strictly)."""
        return value > limit if self is Direction.HIGHER else value < limit

    def worst(self, values: Iterable[float]) -> float:
        """The most revealing of `values`."""
        return max(values) if self is Direction.HIGHER else min(values)

    def leak_margin(self, value: float, reference: float) -> float:
        """How far `value` is past `reference` towards leakage (negative: on the safe side)."""
        return value - reference if self is Direction.HIGHER else reference - value


@dataclass(frozen=True)
class Interval:
    """A confidence interval (bootstrap percentile over victims unless said otherwise)."""

    low: float
    high: float
    level: float = 0.95

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high


@dataclass(frozen=True)
class Estimate:
    """A figure measured on `n` victims, with its interval (None where it cannot be formed)."""

    value: float
    interval: Interval | None = None
    n: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (an undefined figure is null, never NaN)."""
        return {
            "value": self.value if math.isfinite(self.value) else None,
            "interval": None if self.interval is None else asdict(self.interval),
            "n": self.n,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Estimate:
        iv, v = d.get("interval"), d.get("value")
        return cls(
            float("nan") if v is None else float(v),
            None if iv is None else Interval(**iv),
            int(d.get("n", 0)),
        )


@dataclass(frozen=True)
class Limit:
    """The value past which a metric breaks a cut, and what it was derived from."""

    value: float
    reference: str = ""  # e.g. "task-label floor 0.45", "chance 0.10", "cap"


LIMIT_RULES: Registry[type[LimitRule]] = Registry("limit rule")


class LimitRule(ABC):
    """How a metric's limit follows from its judged baselines."""

    kind: ClassVar[str]

    @abstractmethod
    def limit(self, spec: MetricSpec, baselines: Mapping[str, float]) -> Limit:
        """The limit for one result, given its baseline values by name."""

    @abstractmethod
    def describe(self, spec: MetricSpec) -> str:
        """The rule in words, for reports (`SSIM > max(0.4, baseline + 0.1)`)."""

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.kind, **asdict(self)}  # type: ignore[call-overload]

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> LimitRule:
        cls = LIMIT_RULES.get(str(d["rule"]))
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in d.items() if k in names})


def _judged(spec: MetricSpec, baselines: Mapping[str, float]) -> list[tuple[str, float]]:
    """(label, value) of the baselines that enter the limit, present in this result."""
    return [(b.label, float(baselines[b.name])) for b in spec.baselines
            if b.judged and b.name in baselines]  # fmt: skip


def _sign(spec: MetricSpec) -> str:
    return ">" if spec.direction is Direction.HIGHER else "<"


@LIMIT_RULES.register("margin")
@dataclass(frozen=True)
class Margin(LimitRule):
    """Past the most revealing judged baseline by `margin`, and never laxer than `floor`."""

    margin: float
    floor: float | None = None
    kind: ClassVar[str] = "margin"

    def limit(self, spec: MetricSpec, baselines: Mapping[str, float]) -> Limit:
        d = spec.direction
        judged = _judged(spec, baselines)
        ref_label, ref = (
            max(judged, key=lambda b: d.leak_margin(b[1], 0.0)) if judged else ("", None)
        )
        candidates: list[tuple[float, str]] = []
        if ref is not None:
            value = ref + self.margin if d is Direction.HIGHER else ref - self.margin
            candidates.append((value, f"{ref_label} {ref:{spec.fmt}}"))
        if self.floor is not None:
            candidates.append((self.floor, "floor"))
        if not candidates:
            return Limit(float("inf") if d is Direction.HIGHER else float("-inf"), "no baseline")
        # a cut breaks only past both: past the baseline by the margin, and past the floor
        value, reference = (max if d is Direction.HIGHER else min)(candidates)
        return Limit(float(value), reference)

    def describe(self, spec: MetricSpec) -> str:
        names = " / ".join(b.label for b in spec.baselines if b.judged) or "baseline"
        sign = "+" if spec.direction is Direction.HIGHER else "-"
        core = f"{names} {sign} {self.margin:g}"
        if self.floor is not None:
            bound = "max" if spec.direction is Direction.HIGHER else "min"
            core = f"{bound}({self.floor:g}, {core})"
        return f"{spec.label} {_sign(spec)} {core}"


@LIMIT_RULES.register("ratio")
@dataclass(frozen=True)
class Ratio(LimitRule):
    """`ratio` times the most revealing judged baseline (errors: half the baseline's error)."""

    ratio: float
    kind: ClassVar[str] = "ratio"

    def limit(self, spec: MetricSpec, baselines: Mapping[str, float]) -> Limit:
        judged = _judged(spec, baselines)
        if not judged:
            return Limit(float("inf") if spec.direction is Direction.HIGHER else float("-inf"))
        label, ref = max(judged, key=lambda b: spec.direction.leak_margin(b[1], 0.0))
        return Limit(self.ratio * ref, f"{label} {ref:{spec.fmt}}")

    def describe(self, spec: MetricSpec) -> str:
        names = " / ".join(b.label for b in spec.baselines if b.judged) or "baseline"
        return f"{spec.label} {_sign(spec)} {self.ratio:g} x {names}"


@LIMIT_RULES.register("cap")
@dataclass(frozen=True)
class Cap(LimitRule):
    """A fixed value, whatever the baselines (`--max-reid 0.5`)."""

    value: float
    kind: ClassVar[str] = "cap"

    def limit(self, spec: MetricSpec, baselines: Mapping[str, float]) -> Limit:
        return Limit(float(self.value), "cap")

    def describe(self, spec: MetricSpec) -> str:
        return f"{spec.label} {_sign(spec)} {self.value:g}"


@dataclass(frozen=True)
class BaselineSpec:
    """A figure an attacker gets without the features: the aux-mean image, chance, ..."""

    name: str
    label: str
    judged: bool = True  # enters the limit (False: shown beside the figure only)


OVERRIDES: dict[str, Callable[[LimitRule | None, float], LimitRule]] = {
    # the declared rule with its floor moved (a Cap where the rule has no floor)
    "floor": lambda rule, v: replace(rule, floor=v) if isinstance(rule, Margin) else Cap(v),
    "margin": lambda rule, v: Margin(v),  # the baselines plus this margin
    "cap": lambda rule, v: Cap(v),  # this value, whatever the baselines
}


@dataclass(frozen=True)
class LimitOption:
    """How one number from the user moves a metric's limit: `--max-<name>` on the command
    line, `Constraints.from_options({metric: value})` in Python. `means` picks the override
    (`OVERRIDES`: floor, margin or cap)."""

    name: str
    means: str
    help: str

    def __post_init__(self) -> None:
        if self.means not in OVERRIDES:
            raise ValueError(f"LimitOption.means must be one of {', '.join(OVERRIDES)}")

    def rule(self, spec: MetricSpec, value: float) -> LimitRule:
        return OVERRIDES[self.means](spec.limit, float(value))


@dataclass(frozen=True)
class MetricSpec:
    """The serialisable declaration of a leakage metric; results carry it to every reader."""

    name: str
    label: str
    direction: Direction
    limit: LimitRule | None = None  # None: reported beside the others, never judged
    baselines: tuple[BaselineSpec, ...] = ()
    fmt: str = ".2f"
    summary: str = ""
    chance: str | None = None  # name of the baseline that is pure chance, if any
    # how the user may move the limit (None: only through Constraints.limits); not stored
    option: LimitOption | None = field(default=None, compare=False, repr=False)

    @property
    def judged(self) -> bool:
        return self.limit is not None

    def with_limit(self, rule: LimitRule | None) -> MetricSpec:
        return replace(self, limit=rule)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "direction": self.direction.value,
            "limit": None if self.limit is None else self.limit.to_dict(),
            "baselines": [asdict(b) for b in self.baselines],
            "fmt": self.fmt,
            "summary": self.summary,
            "chance": self.chance,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MetricSpec:
        return cls(
            name=str(d["name"]),
            label=str(d.get("label", d["name"])),
            direction=Direction(d["direction"]),
            limit=None if d.get("limit") is None else LimitRule.from_dict(d["limit"]),
            baselines=tuple(BaselineSpec(**b) for b in d.get("baselines", [])),
            fmt=str(d.get("fmt", ".2f")),
            summary=str(d.get("summary", "")),
            chance=d.get("chance"),
        )
