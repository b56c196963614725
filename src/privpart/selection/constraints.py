"""What makes a cut unacceptable: each metric's limit rule, the memory budget, tie tolerance.

The limits themselves are declared with each metric (`privpart.metrics`), so adding an
attack with a new metric needs nothing here. Defaults, printed in every report:

- SSIM (images): breaks a cut above max(0.4, max(aux-mean image, task-label floor) + 0.1). The
  task-label floor is the aux mean image of the victim's task label: the untrusted side computes
  every prediction, so it can always draw the predicted label's prototype, at every cut. On
  Fashion-MNIST the floor is SSIM 0.36 for the 4-way `group` task and 0.45 for the 10-way
  `class` task (limits 0.46 / 0.55).
- re-identification: above chance (1 / line-up size, 0.10) + 0.1.
- feature MAE (tabular): below 0.5 x the aux-mean row's error.
- attribute accuracy: above max(majority class, task-label floor) + 0.1 (the task-label floor is
  the attribute guessed from the task label alone).
- memory: the head's weights + peak activations must fit `memory_budget_bytes` (SGX1 EPC,
  93 MiB) unless `enforce_memory` is off.

`Constraints.limits` overrides a metric's rule by metric name (None: report it, never judge);
`from_options` moves a limit by one number as the metric's `LimitOption` declares (the CLI's
`--max-<option>` flags are generated from those declarations).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from privpart.errors import PrivpartValueError
from privpart.hardware import SGX1_EPC_BYTES
from privpart.metrics import metric_specs
from privpart.metrics.spec import LimitRule, MetricSpec


@dataclass(frozen=True)
class Constraints:
    limits: Mapping[str, LimitRule | None] = field(default_factory=dict)
    memory_budget_bytes: int = SGX1_EPC_BYTES
    enforce_memory: bool = True
    tie_tolerance: float = 0.02  # latencies within 2% are a tie: prefer less leakage

    def rule(self, spec: MetricSpec) -> LimitRule | None:
        """The rule `spec` is judged by: the user's override, else its declaration's."""
        return self.limits.get(spec.name, spec.limit)

    @classmethod
    def from_options(
        cls, maxima: Mapping[str, float | None], specs: Mapping[str, MetricSpec] | None = None,
        **rest: Any,
    ) -> Constraints:
        """Limits moved by one number per metric (`{"ssim": 0.5}`), each as the metric's
        declared `LimitOption` says (floor, margin or cap); None keeps the declared rule.
        `specs` defaults to the built-in metrics'."""
        specs = metric_specs() if specs is None else specs
        limits: dict[str, LimitRule | None] = {}
        for name, value in maxima.items():
            if value is None:
                continue
            spec = specs.get(name)
            if spec is None or spec.option is None:
                movable = sorted(n for n, s in specs.items() if s.option is not None)
                raise PrivpartValueError(
                    f"metric {name!r} has no limit a single number moves",
                    f"give one of {', '.join(movable)}, or set Constraints(limits={{...}})",
                    param="maxima",
                )
            limits[name] = spec.option.rule(spec, value)
        return cls(limits=limits, **rest)

    def to_dict(self) -> dict[str, Any]:
        return {
            "limits": {k: None if r is None else r.to_dict() for k, r in self.limits.items()},
            "memory_budget_bytes": self.memory_budget_bytes,
            "enforce_memory": self.enforce_memory,
            "tie_tolerance": self.tie_tolerance,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Constraints:
        return cls(
            limits={
                k: None if r is None else LimitRule.from_dict(r)
                for k, r in d.get("limits", {}).items()
            },
            memory_budget_bytes=int(d.get("memory_budget_bytes", SGX1_EPC_BYTES)),
            enforce_memory=bool(d.get("enforce_memory", True)),
            tie_tolerance=float(d.get("tie_tolerance", 0.02)),
        )
