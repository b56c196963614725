"""The attack contract: budgets, declared parameters, and the `Attack` base.

An attack declares its threat model, its output (reconstructions or attribute predictions:
that picks the metrics it is scored by) and its parameters. It works on an `AttackerView`, the
share of a cut its threat model grants (`view.py`): `fit` prepares from aux data and whatever
else is granted, `run` attacks the intercepted victim features and returns an `AttackOutput`.
It never sees a victim's input or label; the framework scores the output (`scoring.py`).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor

from privpart.attacks.threat import ThreatModel
from privpart.errors import PrivpartError, PrivpartValueError
from privpart.params import Param, resolve

if TYPE_CHECKING:
    from privpart.attacks.view import AttackerView


@dataclass
class Budget:
    """How much work an attack may do: a wall-clock budget, a step count, or both.

    `Budget()` means the attack's defaults: its `default_seconds` with a cap of `default_steps`
    (the cap only binds on cheap cuts or fast machines). A larger `seconds` scales the cap with
    it, so a bigger budget always buys more steps. `Budget(steps=N)` alone runs exactly N steps
    with no clock, which makes results reproducible bit for bit.
    """

    seconds: float | None = None
    steps: int | None = None

    def validate(self) -> Budget:
        for what, value in (("seconds", self.seconds), ("steps", self.steps)):
            if value is None:
                continue
            bad = not isinstance(value, int | float) or not math.isfinite(value) or value <= 0
            if bad or (what == "steps" and int(value) != value):
                raise PrivpartValueError(
                    f"attack budget `{what}` is {value!r}, not a positive "
                    f"{'integer' if what == 'steps' else 'number'}",
                    "give `seconds` (e.g. 30) or `steps` (e.g. 500), both > 0",
                    param=what,
                )
        return self

    def scaled(self, factor: float, default_seconds: float) -> Budget:
        """This budget times `factor` (budget-vs-strength curves)."""
        seconds = self.seconds if self.seconds is not None else default_seconds
        if self.steps is not None and self.seconds is None:
            return Budget(steps=max(1, round(self.steps * factor)))
        steps = None if self.steps is None else max(1, round(self.steps * factor))
        return Budget(seconds=seconds * factor, steps=steps)

    def clock(self, default_seconds: float, default_steps: int) -> Clock:
        """The concrete limits for one run of an attack with these defaults."""
        self.validate()
        if self.seconds is None and self.steps is None:
            return Clock(default_seconds, default_steps)
        if self.seconds is None:
            return Clock(None, int(self.steps))  # type: ignore[arg-type]
        cap = self.steps or max(1, math.ceil(default_steps * self.seconds / default_seconds))
        return Clock(float(self.seconds), int(cap))

    def to_dict(self) -> dict:
        return asdict(self)


class Clock:
    """Counts steps against a step cap and (optionally) a wall-clock deadline."""

    def __init__(self, seconds: float | None, steps: int) -> None:
        self.seconds = seconds
        self.steps = steps
        self.step = 0
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @property
    def fraction(self) -> float:
        """How much of the budget is used, in [0, 1]: drives learning-rate schedules."""
        f = self.step / self.steps
        if self.seconds is not None:
            f = max(f, self.elapsed / self.seconds)
        return min(f, 1.0)

    @property
    def done(self) -> bool:
        return self.step >= self.steps or (
            self.seconds is not None and self.elapsed >= self.seconds
        )

    def tick(self) -> None:
        self.step += 1

    def limits(self) -> dict:
        return {"seconds": self.seconds, "step_cap": self.steps}


def cosine_lr(base: float, fraction: float, floor: float = 0.02) -> float:
    """Cosine decay from `base` to `floor * base` over the budget (time or steps)."""
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * fraction)))


class Output(StrEnum):
    """What an attack produces, which decides the metrics it is scored by."""

    RECONSTRUCTION = "reconstruction"  # inputs recovered from features
    ATTRIBUTE = "attribute"  # a private attribute predicted per victim


@dataclass
class AttackOutput:
    """What an attack recovered from the intercepted features; the framework scores it.

    Two output kinds are built in (`reconstructions`, `predictions`); any other goes in
    `outputs` under the name a metric of the attack `needs` (privpart.metrics.Metric). Each
    kind answers for the FIRST k victims, k the same for all."""

    reconstructions: Tensor | None = None  # (k, C, H, W) in [0, 1]
    predictions: Tensor | None = None  # (k,) attribute class per victim
    attribute: str | None = None  # which attribute `predictions` are of
    outputs: dict[str, Tensor] = field(default_factory=dict)  # other kinds, by name
    info: dict[str, Any] = field(default_factory=dict)  # how it went (JSON-able)

    BUILT_IN: ClassVar[tuple[str, ...]] = ("reconstructions", "predictions")

    def __post_init__(self) -> None:
        clash = set(self.outputs) & set(self.BUILT_IN)
        if clash:
            raise PrivpartValueError(
                f"AttackOutput.outputs names a built-in kind: {', '.join(sorted(clash))}",
                "pass reconstructions= or predictions= directly",
                param="outputs",
            )

    def get(self, kind: str) -> Tensor | None:
        """The output of kind `kind` (None where the attack returned none)."""
        return getattr(self, kind) if kind in self.BUILT_IN else self.outputs.get(kind)

    def kinds(self) -> dict[str, Tensor]:
        """Every output kind returned, by name."""
        out = {k: self.get(k) for k in self.BUILT_IN}
        return {k: v for k, v in {**out, **self.outputs}.items() if v is not None}


class Attack(ABC):
    """One leakage attack. Subclasses set `name`, `threat_model`, `output`, `params`, and
    implement `fit` and `run`; the metrics come with the output kind (`scoring.metrics_for`)
    unless the class declares its own `metrics` (privpart.metrics).

    Parameters are validated at construction, before any work.
    """

    name: ClassVar[str]
    threat_model: ClassVar[ThreatModel]
    output: ClassVar[Output] = Output.RECONSTRUCTION
    params: ClassVar[dict[str, Param]] = {}
    metrics: ClassVar[tuple | None] = None  # tuple[privpart.metrics.Metric, ...]; None: by `output`
    # defences (by method name) this attack knows how to attack; the audit adds it to the
    # attacks run on a checkpoint defended that way (`adaptive.adaptive_attacks`)
    adaptive_to: ClassVar[tuple[str, ...]] = ()
    default_seconds: ClassVar[float] = 30.0
    default_steps: ClassVar[int] = 1000

    def __init__(self, budget: Budget | None = None, seed: int = 0, **params: Any) -> None:
        self.budget = (budget or Budget()).validate()
        self.seed = int(seed)
        self.values: dict[str, Any] = resolve(f"attack {self.name!r}", self.params, params)
        self.fitted = False

    @abstractmethod
    def fit(self, view: AttackerView) -> None:
        """Prepare the attack from what the view grants (aux data; queries or weights)."""

    @abstractmethod
    def run(self, view: AttackerView) -> AttackOutput:
        """Attack the intercepted victim features (after `fit`)."""

    def clock(self) -> Clock:
        return self.budget.clock(self.default_seconds, self.default_steps)

    def config(self, view: AttackerView) -> dict[str, Any]:
        """Provenance recorded with the result."""
        return {
            "attack": self.name,
            "threat_model": self.threat_model.value,
            "seed": self.seed,
            "budget": self.budget.to_dict(),
            "default_budget": {"seconds": self.default_seconds, "step_cap": self.default_steps},
            "params": dict(self.values),
            "sizes": view.sizes(),
            "cut": view.cut.name,
            "feature_shape": list(view.feature_shape),
            "input_shape": list(view.input_shape),
            "kind": view.kind,
            "dataset": view.dataset,
            "device": str(view.device),
        }

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise PrivpartError(
                f"attack {self.name!r} was run before fit()", "call fit(view) first"
            )
