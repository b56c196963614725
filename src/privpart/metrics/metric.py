"""A metric as the scorer runs it: its declaration (`MetricSpec`), how to compute it per victim
from an attack's output, and its baselines; and `Truth`, what the scorer knows that no attack
does.

A metric reads one *output kind* of an `AttackOutput` (`needs`): the built-in kinds are
`reconstructions` and `predictions`; an attack may return any other kind by name in
`AttackOutput.outputs`, and a metric that `needs` that name scores it. A new attack with a new
kind of output therefore declares both in its own file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from torch import Tensor

from privpart.metrics.baselines import label_mean_guess, mean_image_guess
from privpart.metrics.reid import DEFAULT_K
from privpart.metrics.spec import MetricSpec
from privpart.metrics.tabular import default_feature_names


class FeatureSet(Protocol):
    """What the scorer reads of a cut's feature set (privpart.attacks.FeatureSet): the aux and
    victim inputs and labels. Declared here so metrics do not depend on the attacks."""

    kind: str
    task: str
    aux_inputs: Tensor
    victim_inputs: Tensor
    aux_attributes: Mapping[str, Tensor]
    victim_attributes: Mapping[str, Tensor]
    attribute_classes: Mapping[str, list[str]]
    native_size: tuple[int, int] | None
    feature_names: list[str] | None


class AttackOutput(Protocol):
    """What a metric reads of an attack's output (privpart.attacks.AttackOutput)."""

    reconstructions: Tensor | None
    predictions: Tensor | None

    def get(self, kind: str) -> Tensor | None: ...


@dataclass
class Truth:
    """What the scorer knows and no attack does: the victims' inputs and labels, and the aux
    data baselines are fitted on. `k` victims are scored (the first ones)."""

    fs: FeatureSet
    k: int
    attribute: str | None = None  # the attribute an attribute attack predicted
    seed: int = 0
    reid_k: int = DEFAULT_K
    _cache: dict[str, Tensor] = field(default_factory=dict, repr=False)

    @property
    def victims(self) -> Tensor:
        return self.fs.victim_inputs[: self.k]

    @property
    def kind(self) -> str:
        return self.fs.kind

    def labels(self, name: str) -> Tensor | None:
        """All victims' values of attribute `name` (None if the dataset has no such label)."""
        return self.fs.victim_attributes.get(name)

    @property
    def task_labels(self) -> Tensor | None:
        return self.labels(self.fs.task)

    @property
    def native(self) -> tuple[tuple[int, int], list[str]]:
        """(native grid size, column names) of tabular rows."""
        fs = self.fs
        native = fs.native_size or tuple(self.victims.shape[2:])
        names = fs.feature_names or default_feature_names(native[0] * native[1])
        return native, names  # type: ignore[return-value]

    def guess(self, name: str) -> Tensor | None:
        """A no-information guess per scored victim: `aux_mean`, or `task_floor`."""
        if name not in self._cache:
            fs, victims = self.fs, self.victims
            if name == "aux_mean":
                self._cache[name] = mean_image_guess(fs.aux_inputs, victims)
            elif name == "task_floor":
                task = fs.task
                if task not in fs.aux_attributes or self.task_labels is None:
                    return None
                self._cache[name] = label_mean_guess(
                    fs.aux_inputs, fs.aux_attributes[task], victims, self.task_labels[: self.k]
                )
            else:
                raise KeyError(name)
        return self._cache[name]


PerVictim = Callable[[AttackOutput, Truth], Tensor]
Baselines = Callable[[Truth], dict[str, float]]


def no_baselines(truth: Truth) -> dict[str, float]:
    return {}


@dataclass(frozen=True)
class Metric:
    """A declared metric: the spec every reader sees, plus how the scorer computes it."""

    spec: MetricSpec
    per_victim: PerVictim
    baselines: Baselines = no_baselines
    kinds: frozenset[str] = frozenset({"image", "tabular"})  # the data kinds it applies to
    needs: str = "reconstructions"  # the output kind it reads (`AttackOutput.get`)

    def applies(self, kind: str, output: AttackOutput) -> bool:
        return kind in self.kinds and output.get(self.needs) is not None
