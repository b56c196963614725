"""The attack contract: budgets, the features one cut exposes, results, and the `Attack` base.

Every attack declares one threat model (see ARCHITECTURE.md) and is split into `fit` (the
attacker's preparation: auxiliary data only) and `evaluate` (scoring on held-out victims). The
split is what keeps victims out of training and tuning; tests poison the victim tensors during
`fit` to prove it.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from privpart.errors import PrivpartError
from privpart.partition import Cut

THREAT_MODELS = ("black-box query", "white-box", "attribute")


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
                raise PrivpartError(
                    f"attack budget {what}={value!r} is not a positive "
                    f"{'integer' if what == 'steps' else 'number'}",
                    "give --budget SECONDS (e.g. 30) or --steps N (e.g. 500), both > 0",
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


@dataclass
class FeatureSet:
    """Features at ONE cut, computed once and shared by every attack on that cut.

    Black-box attacks may only query `head` on auxiliary data; white-box attacks may read its
    weights. `victim_*` are for scoring only: never for fitting or tuning.
    """

    cut: Cut
    head: nn.Module
    aux_inputs: Tensor
    aux_features: Tensor
    victim_inputs: Tensor
    victim_features: Tensor
    aux_attributes: dict[str, Tensor]
    victim_attributes: dict[str, Tensor]
    attribute_classes: dict[str, list[str]]
    kind: str = "image"
    feature_names: list[str] | None = None
    native_size: tuple[int, int] | None = None
    aux_index: Tensor | None = None  # dataset indices, for provenance and overlap checks
    victim_index: Tensor | None = None
    dataset: str = ""
    task: str = "class"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.aux_inputs.shape[1:])

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.aux_features.shape[1:])

    def aux_split(self, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
        """(train, validation) indices into the aux set: tuning never needs a victim."""
        n = int(self.aux_inputs.shape[0])
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        n_val = min(max(1, round(n * val_fraction)), n - 1) if n > 1 else 0
        return perm[n_val:], perm[:n_val]

    def sizes(self) -> dict[str, int]:
        return {"aux": int(self.aux_inputs.shape[0]), "victim": int(self.victim_inputs.shape[0])}


@dataclass
class AttackResult:
    """What one attack achieved at one cut, with the baselines it must beat and its config."""

    attack: str
    threat_model: str
    cut: str
    metrics: dict[str, float]
    baselines: dict[str, float]
    config: dict
    seconds: float
    samples: Tensor | None = None
    per_feature: dict[str, float] | None = None
    sample_inputs: Tensor | None = field(default=None, repr=False)  # victims behind `samples`

    def to_dict(self) -> dict:
        """JSON-ready: tensors are dropped (reconstructions go to grid.png instead)."""
        return {
            "attack": self.attack,
            "threat_model": self.threat_model,
            "cut": self.cut,
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "baselines": {k: float(v) for k, v in self.baselines.items()},
            "config": _jsonable(self.config),
            "seconds": float(self.seconds),
            "per_feature": None
            if self.per_feature is None
            else {k: float(v) for k, v in self.per_feature.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> AttackResult:
        known = {f.name for f in fields(cls)} - {"samples", "sample_inputs"}
        return cls(**{k: v for k, v in d.items() if k in known})


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Tensor):
        return obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


class Attack(ABC):
    """One leakage attack. Subclasses set `name`, `threat_model`, their defaults, fit, evaluate.

    `params` override `defaults`; an unknown parameter fails at construction, before any work.
    """

    name: ClassVar[str]
    threat_model: ClassVar[str]
    default_seconds: ClassVar[float] = 30.0
    default_steps: ClassVar[int] = 1000
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, budget: Budget | None = None, seed: int = 0, **params: Any) -> None:
        self.budget = (budget or Budget()).validate()
        self.seed = int(seed)
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise PrivpartError(
                f"attack {self.name!r} has no parameter(s) {', '.join(unknown)}",
                f"its parameters: {', '.join(sorted(self.defaults)) or 'none'}",
            )
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.fitted = False

    @abstractmethod
    def fit(self, fs: FeatureSet) -> None:
        """Prepare the attack from auxiliary data (and, white-box, the head) only."""

    @abstractmethod
    def evaluate(self, fs: FeatureSet) -> AttackResult:
        """Attack the victims' features and score against the victims' inputs."""

    def clock(self) -> Clock:
        return self.budget.clock(self.default_seconds, self.default_steps)

    def base_config(self, fs: FeatureSet) -> dict:
        return {
            "attack": self.name,
            "threat_model": self.threat_model,
            "seed": self.seed,
            "budget": self.budget.to_dict(),
            "default_budget": {"seconds": self.default_seconds, "step_cap": self.default_steps},
            "params": dict(self.params),
            "sizes": fs.sizes(),
            "cut": fs.cut.name,
            "feature_shape": list(fs.feature_shape),
            "input_shape": list(fs.input_shape),
            "kind": fs.kind,
            "dataset": fs.dataset,
        }

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise PrivpartError(
                f"attack {self.name!r} was evaluated before fit()", "call fit(fs) first"
            )
