"""What one attacker is granted at one cut: built from a `FeatureSet` for a threat model.

The view never holds the victims' inputs or labels (those stay with the scorer), and holds the
head only if the threat model lets the attacker reach it: a no-head-access view has no head
object at all and no aux features (they would be answers of the head), so an attack cannot
use them by accident or by design. Asking for what is not granted raises `ThreatModelError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from privpart.attacks.features import FeatureSet
from privpart.attacks.threat import ThreatModel, ThreatModelError
from privpart.partition import Cut


class _Oracle:
    """Runs the head on the attacker's own inputs: eval mode, no gradients, on the device."""

    __slots__ = ("_head", "_device")

    def __init__(self, head: nn.Module, device: torch.device) -> None:
        self._head = head
        self._device = device

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        self._head.eval()
        return self._head(x.to(self._device, non_blocking=True))


@dataclass(frozen=True, eq=False)
class AttackerView:
    """One threat model's share of a cut (see `privpart.attacks.threat`)."""

    threat_model: ThreatModel
    cut: Cut
    aux_inputs: Tensor  # the attacker's own data, [0, 1] image space
    aux_attributes: dict[str, Tensor]  # labels of the attacker's own data
    attribute_classes: dict[str, list[str]]
    intercepted: Tensor  # the victims' features as observed at the cut, unlabelled
    kind: str = "image"
    dataset: str = ""
    task: str = "class"
    device: torch.device = torch.device("cpu")
    feature_names: list[str] | None = None
    native_size: tuple[int, int] | None = None
    _aux_features: Tensor | None = None
    _oracle: _Oracle | None = None
    _head: nn.Module | None = None

    @classmethod
    def of(cls, fs: FeatureSet, threat_model: ThreatModel) -> AttackerView:
        """The view `threat_model` grants on `fs`."""
        query = threat_model.may_query
        return cls(
            threat_model=threat_model,
            cut=fs.cut,
            aux_inputs=fs.aux_inputs,
            aux_attributes=dict(fs.aux_attributes),
            attribute_classes=dict(fs.attribute_classes),
            intercepted=fs.victim_features,
            kind=fs.kind,
            dataset=fs.dataset,
            task=fs.task,
            device=fs.device,
            feature_names=fs.feature_names,
            native_size=fs.native_size,
            _aux_features=fs.aux_features if query else None,
            _oracle=_Oracle(fs.head, fs.device) if query else None,
            _head=fs.head if threat_model.may_read_weights else None,
        )

    def _refuse(self, what: str) -> ThreatModelError:
        return ThreatModelError(
            f"a {self.threat_model.value} attacker may not {what} "
            f"({self.threat_model.summary})",
            "declare the threat model that grants it (ThreatModel.WHITE_BOX for the weights, "
            "BLACK_BOX_QUERY for queries), or attack without it",
        )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.aux_inputs.shape[1:])

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.intercepted.shape[1:])

    @property
    def aux_features(self) -> Tensor:
        """The head's features of the aux inputs (answers to queries)."""
        if self._aux_features is None:
            raise self._refuse("have the head's features of its own inputs")
        return self._aux_features

    def query(self, x: Tensor) -> Tensor:
        """head(x) for inputs of the attacker's choice."""
        if self._oracle is None:
            raise self._refuse("query the head")
        return self._oracle(x)

    @property
    def head(self) -> nn.Module:
        """The head itself, weights included (white-box only)."""
        if self._head is None:
            raise self._refuse("read the head's weights")
        return self._head

    def aux_split(self, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
        """(train, validation) indices into the aux set: tuning never needs a victim."""
        n = int(self.aux_inputs.shape[0])
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        n_val = min(max(1, round(n * val_fraction)), n - 1) if n > 1 else 0
        return perm[n_val:], perm[:n_val]

    def sizes(self) -> dict[str, int]:
        return {"aux": int(self.aux_inputs.shape[0]), "victim": int(self.intercepted.shape[0])}
