"""Threat models are enforced by what the view holds, not declared only."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch

from privpart.attacks import (
    Attack,
    AttackerView,
    AttackOutput,
    Budget,
    FeatureSet,
    ThreatModel,
    ThreatModelError,
    run_attack,
)


class Tripwire(torch.nn.Module):
    """A head that fails the test if anything runs it or reads its weights."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the head was queried")

    def parameters(self, recurse: bool = True):  # noqa: ANN201
        raise AssertionError("the head's weights were read")


def test_each_threat_model_grants_exactly_its_share(tiny_sets: dict[str, FeatureSet]) -> None:
    fs = tiny_sets["block1"]
    x = fs.aux_inputs[:2]
    white = AttackerView.of(fs, ThreatModel.WHITE_BOX)
    assert white.head is fs.head and torch.allclose(white.query(x), fs.aux_features[:2], atol=1e-5)
    black = AttackerView.of(fs, ThreatModel.BLACK_BOX_QUERY)
    assert torch.equal(black.aux_features, fs.aux_features) and black.query(x).shape[0] == 2
    with pytest.raises(ThreatModelError, match="may not read the head's weights"):
        _ = black.head
    blind = AttackerView.of(fs, ThreatModel.NO_HEAD_ACCESS)
    for grab in (lambda: blind.head, lambda: blind.query(x), lambda: blind.aux_features):
        with pytest.raises(ThreatModelError, match="no head access attacker may not") as err:
            grab()
        assert err.value.hint
    # not hidden behind a property: the view holds no head and no answers of it at all
    held = [getattr(blind, f) for f in blind.__dataclass_fields__]
    assert all(v is not fs.head and v is not fs.aux_features for v in held)
    assert torch.equal(blind.intercepted, fs.victim_features)  # what it does see: the traffic
    for view in (white, black, blind):  # and never a victim's input or label
        assert not any(v is fs.victim_inputs for v in vars(view).values())
        assert not any(v is fs.victim_attributes for v in vars(view).values())


class Sneaky(Attack):
    """A no-head-access attack that tries to query the head anyway."""

    name: ClassVar[str] = "sneaky"
    threat_model: ClassVar[ThreatModel] = ThreatModel.NO_HEAD_ACCESS

    def fit(self, view: AttackerView) -> None:
        view.query(view.aux_inputs[:1])

    def run(self, view: AttackerView) -> AttackOutput:
        return AttackOutput(reconstructions=view.aux_inputs[:1])


class Blind(Sneaky):
    """A no-head-access attack that only uses what it is granted."""

    def fit(self, view: AttackerView) -> None:
        self.mean = view.aux_inputs.mean(0, keepdim=True)

    def run(self, view: AttackerView) -> AttackOutput:
        return AttackOutput(reconstructions=self.mean.expand(view.intercepted.shape[0], -1, -1, -1))


def test_an_attack_cannot_reach_what_its_threat_model_forbids(
    tiny_sets: dict[str, FeatureSet],
) -> None:
    fs = tiny_sets["block1"]
    with pytest.raises(ThreatModelError, match="query the head"):
        run_attack(Sneaky(Budget(steps=1)), fs)
    tripped = FeatureSet(**{**fs.__dict__, "head": Tripwire()})
    result = run_attack(Blind(Budget(steps=1)), tripped)  # never touches the tripwire head
    assert result.threat_model is ThreatModel.NO_HEAD_ACCESS
    assert result.ssim == pytest.approx(result.metric("ssim").baselines["aux_mean"], abs=1e-6)
