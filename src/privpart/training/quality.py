"""Is the target worth auditing? Test accuracy against chance, before any cut is judged.

A model that learned nothing leaks nothing interesting and selects nothing meaningful: its cuts
would be judged all the same. The audit therefore measures the target's accuracy on the
target-test split and stops when it is near chance:

    chance    = the majority class's share of the target-test split (the best constant guess)
    weak when   accuracy < chance + max(0.05, 3 standard errors of chance on that split)

(3 standard errors = 3 * sqrt(chance * (1 - chance) / n): with 2,000 test samples of 10 balanced
classes the bar is 15%; with 100 samples of 2 classes, 65%).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from privpart.errors import PrivpartValueError

MARGIN = 0.05
STANDARD_ERRORS = 3.0


@dataclass(frozen=True)
class TargetCheck:
    """The target model's test accuracy set against chance on the same split."""

    accuracy: float
    chance: float
    bar: float  # accuracy below this is "near chance"
    samples: int

    @property
    def weak(self) -> bool:
        return self.accuracy < self.bar

    def to_dict(self) -> dict:
        return {**asdict(self), "weak": self.weak}

    def describe(self) -> str:
        verdict = "near chance" if self.weak else "above chance"
        return (
            f"test accuracy {self.accuracy:.2%} on {self.samples} samples, chance "
            f"{self.chance:.2%} (majority class): {verdict} (bar {self.bar:.2%})"
        )


def check_target(accuracy: float, test_labels: torch.Tensor) -> TargetCheck:
    """Set `accuracy` (measured on the samples whose labels are `test_labels`) against chance."""
    n = int(test_labels.numel())
    if n == 0:
        return TargetCheck(accuracy, 1.0, 1.0, 0)
    counts = torch.bincount(test_labels.long())
    chance = float(counts.max()) / n
    bar = chance + max(MARGIN, STANDARD_ERRORS * math.sqrt(chance * (1 - chance) / n))
    return TargetCheck(accuracy, chance, min(bar, 1.0), n)


WEAK_HINT = (
    "train longer or on more data ({more}), check that the labels match the images (and, for "
    "imported weights, that the dataset's classes are the model's outputs in order), or pass "
    "{allow} to audit it anyway"
)


def require_useful(
    check: TargetCheck,
    allow_weak: bool,
    more: str = "`train_epochs`, `train_limit`",
    allow: str = "`allow_weak_target=True`",
) -> None:
    """Stop on a near-chance target unless the caller allows it (`more`/`allow` name the
    caller's parameters, in backticks so the command line shows its flags)."""
    if check.weak and not allow_weak:
        raise PrivpartValueError(
            f"the target model is near chance: {check.describe()}; its cuts would be judged on "
            "a model that learned nothing",
            WEAK_HINT.format(more=more, allow=allow),
        )
