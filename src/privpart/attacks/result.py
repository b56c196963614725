"""What one attack achieved at one cut, typed: each metric's figure with its interval, its
baselines and its declaration, so every reader works from the result alone.

    r = run_attack("decoder", fs)
    r.ssim                      # 0.83, the figure (attribute access, for notebooks)
    r.metric("ssim").estimate.interval, r.metric("ssim").baselines["task_floor"]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from privpart.attacks.threat import ThreatModel
from privpart.errors import PrivpartError
from privpart.metrics.spec import Estimate, MetricSpec


@dataclass(frozen=True)
class MetricResult:
    """One metric of one attack at one cut."""

    spec: MetricSpec
    estimate: Estimate
    baselines: dict[str, float] = field(default_factory=dict)

    @property
    def value(self) -> float:
        return self.estimate.value

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            **self.estimate.to_dict(),
            "baselines": {k: _finite(v) for k, v in self.baselines.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MetricResult:
        return cls(
            MetricSpec.from_dict(d["spec"]),
            Estimate.from_dict(d),
            {k: float("nan") if v is None else float(v) for k, v in d["baselines"].items()},
        )


@dataclass
class AttackResult:
    """The scored outcome of one attack; `metrics` keeps its declaration order."""

    attack: str
    threat_model: ThreatModel
    cut: str
    metrics: dict[str, MetricResult]
    config: dict[str, Any]  # provenance: parameters, budget, sizes, how the fit went
    seconds: float
    samples: Tensor | None = field(default=None, repr=False)  # reconstructions for grids
    sample_inputs: Tensor | None = field(default=None, repr=False)  # the victims behind them
    per_feature: dict[str, float] | None = None  # tabular: error per column
    grid: str | None = None  # image file of samples, relative to the audit folder
    cached: bool = False

    def metric(self, name: str) -> MetricResult:
        try:
            return self.metrics[name]
        except KeyError:
            raise PrivpartError(
                f"attack {self.attack!r} at {self.cut} has no metric {name!r}",
                f"its metrics: {', '.join(self.metrics) or 'none'}",
            ) from None

    def __getattr__(self, name: str) -> float:
        # Only called for names that are not attributes: metric figures, e.g. `result.ssim`.
        metrics = self.__dict__.get("metrics")
        if metrics is None or name.startswith("_") or name not in metrics:
            raise AttributeError(name)
        return metrics[name].value

    @property
    def headline(self) -> MetricResult | None:
        """The first judged metric (the one tables show), else the first metric."""
        judged = [m for m in self.metrics.values() if m.spec.judged]
        return (judged or list(self.metrics.values()) or [None])[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tensors are dropped (reconstructions go to image files instead)."""
        return {
            "attack": self.attack,
            "threat_model": self.threat_model.value,
            "cut": self.cut,
            "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
            "config": jsonable(self.config),
            "seconds": float(self.seconds),
            "per_feature": None
            if self.per_feature is None
            else {k: float(v) for k, v in self.per_feature.items()},
            "grid": self.grid,
            "cached": self.cached,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AttackResult:
        return cls(
            attack=str(d["attack"]),
            threat_model=ThreatModel(d["threat_model"]),
            cut=str(d["cut"]),
            metrics={k: MetricResult.from_dict(m) for k, m in d["metrics"].items()},
            config=dict(d.get("config", {})),
            seconds=float(d.get("seconds", 0.0)),
            per_feature=d.get("per_feature"),
            grid=d.get("grid"),
            cached=bool(d.get("cached", False)),
        )


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def jsonable(obj: Any) -> Any:
    """Tensors to lists, non-finite floats to None, keys to strings: safe for json.dumps."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Tensor):
        return obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
