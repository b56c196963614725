"""What makes a cut unacceptable. Defaults are documented here and printed in every report.

- Reconstruction (image): an attack breaks a cut when its SSIM exceeds `max_ssim` (0.4: shapes
  and garment types become recognisable) AND beats its baseline by more than `ssim_margin` (0.1),
  so a dataset whose mean image already scores high does not make every cut "broken". The
  baseline is the larger of the aux-mean image and the *task-label floor* (the aux mean image of
  the victim's task label): the untrusted side computes every prediction, so it can always draw
  the predicted label's prototype, at every cut. On Fashion-MNIST the floor is SSIM 0.36 for the
  4-way `group` task and 0.45 for the 10-way `class` task (limits 0.46 / 0.55).
- Reconstruction (tabular): broken when the attack's mean absolute feature error is below
  `max_mae_ratio` (0.5) times the baseline's (guessing each feature's aux mean).
- Attribute: broken when accuracy exceeds its baseline by more than `max_attribute_advantage`
  (0.1). The baseline is the larger of the aux majority class and the *task-label floor* (the
  attribute guessed from the victim's task label alone): the untrusted side learns every
  prediction, so what the label reveals leaks at every cut and cannot count against one.
- Memory: the head's weights + peak activations must fit `memory_budget_bytes` (SGX1 EPC,
  93 MiB) unless `enforce_memory` is off.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from privpart.profiling.memory import SGX1_EPC_BYTES


@dataclass(frozen=True)
class Constraints:
    max_ssim: float = 0.4
    ssim_margin: float = 0.1
    max_ssim_per_attack: dict[str, float] = field(default_factory=dict)
    max_mae_ratio: float = 0.5
    max_attribute_advantage: float = 0.1
    memory_budget_bytes: int = SGX1_EPC_BYTES
    enforce_memory: bool = True
    tie_tolerance: float = 0.02  # latencies within 2% are a tie: prefer less leakage

    def ssim_limit(self, attack: str, baseline: float, task_floor: float = 0.0) -> float:
        """SSIM above which `attack` breaks a cut, given its aux-mean and task-label baselines."""
        cap = self.max_ssim_per_attack.get(attack, self.max_ssim)
        return max(cap, max(baseline, task_floor) + self.ssim_margin)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Constraints:
        return cls(**d)
