"""The new attacks get exactly what their threat model grants, enforced by the view: `fora`
(no head access) never runs or reads the head and never sees its features of aux images;
`prior-decoder` and `denoiser` (black-box query) only query it; `whitebox` and `prior`
(white-box) leave the shared head untouched."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from privpart.attacks import ATTACKS, Budget, FeatureSet, ThreatModel, run_attack
from privpart.attacks.view import AttackerView
from tests.attacks.test_attacks import SMALL, Poisoned


class Tripwire(torch.nn.Module):
    """A head that fails the test if anything runs it or reads its weights."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the head was queried")

    def parameters(self, recurse: bool = True):  # noqa: ANN201
        raise AssertionError("the head's weights were read")

    def state_dict(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        raise AssertionError("the head's weights were read")


class QueryOnly(torch.nn.Module):
    """Runs the real head (queries work) and counts them; its weights cannot be read."""

    def __init__(self, head: torch.nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "_inner", head)  # not a submodule: no parameters to find
        object.__setattr__(self, "calls", 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        object.__setattr__(self, "calls", self.calls + 1)
        return self._inner(x)

    def parameters(self, recurse: bool = True):  # noqa: ANN201
        raise AssertionError("the head's weights were read")

    def state_dict(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        raise AssertionError("the head's weights were read")


def test_fora_never_reaches_the_head(tiny_sets: dict[str, FeatureSet]) -> None:
    fs = tiny_sets["block1"]
    blind = replace(fs, head=Tripwire(), aux_features=Poisoned())
    result = run_attack("fora", blind, Budget(steps=4), **SMALL["fora"])
    assert ATTACKS.get("fora").threat_model is ThreatModel.NO_HEAD_ACCESS
    assert result.threat_model is ThreatModel.NO_HEAD_ACCESS
    assert result.metric("ssim").estimate.n == fs.victim_inputs.shape[0]  # all intercepted
    sub = result.config["substitute"]
    assert sub["steps"] == 4 and result.config["inverse"]["steps"] == 4
    # and its view holds nothing of the head: no object, no oracle, no answers
    view = AttackerView.of(blind, ThreatModel.NO_HEAD_ACCESS)
    assert view._head is None and view._oracle is None and view._aux_features is None


@pytest.mark.parametrize("name", ["prior-decoder", "denoiser"])
def test_black_box_attacks_only_query(tiny_sets: dict[str, FeatureSet], name: str) -> None:
    fs = tiny_sets["block1"]
    head = QueryOnly(fs.head)
    result = run_attack(name, replace(fs, head=head), Budget(steps=5), **SMALL[name])
    assert result.threat_model is ThreatModel.BLACK_BOX_QUERY
    assert head.calls >= 5  # a fresh query per training step (augmented aux images)
    assert result.config["fit" if name == "denoiser" else "decoder"]["steps"] == 5


@pytest.mark.parametrize("name", ["whitebox", "prior"])
def test_white_box_attacks_leave_the_shared_head_alone(
    tiny_sets: dict[str, FeatureSet], name: str
) -> None:
    fs = tiny_sets["block1"]
    before = {k: v.clone() for k, v in fs.head.state_dict().items()}
    grads = [p.requires_grad for p in fs.head.parameters()]
    run_attack(name, fs, Budget(steps=3), **SMALL[name])
    after = fs.head.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in fs.head.parameters()] == grads
    assert all(p.grad is None for p in fs.head.parameters())
