from __future__ import annotations

import json

import pytest
import torch

from privpart.attacks import (
    ATTACKS,
    DEFAULT_ATTACKS,
    AttackResult,
    Budget,
    MetricResult,
    ThreatModel,
    make_attack,
)
from privpart.attacks.base import Clock
from privpart.errors import PrivpartError
from privpart.metrics.spec import Estimate, Interval


def test_registry_has_every_default_attack_with_a_threat_model() -> None:
    assert set(DEFAULT_ATTACKS) <= set(ATTACKS.names())
    for name in DEFAULT_ATTACKS:
        cls = ATTACKS.get(name)
        assert cls.name == name and isinstance(cls.threat_model, ThreatModel)
    assert ATTACKS.get("cgan").threat_model is ThreatModel.BLACK_BOX_QUERY
    assert ATTACKS.get("whitebox").threat_model is ThreatModel.WHITE_BOX


def test_make_attack_gives_new_instances_and_checks_params() -> None:
    a, b = make_attack("decoder"), make_attack("decoder")
    assert a is not b and a.values is not b.values
    assert make_attack("cgan", l1_weight=10.0).values["l1_weight"] == 10.0
    with pytest.raises(PrivpartError, match="no parameter"):
        make_attack("decoder", l1_weight=3)
    with pytest.raises(PrivpartError, match="must be one of l1, mse"):
        make_attack("decoder", loss="huber")
    with pytest.raises(PrivpartError, match="`lr` must be > 0"):
        make_attack("decoder", lr=0.0)
    with pytest.raises(PrivpartError, match="unknown attack 'nope'") as err:
        make_attack("nope")
    assert "cgan" in err.value.hint


@pytest.mark.parametrize("bad", [Budget(seconds=0), Budget(seconds=-1), Budget(steps=0),
                                 Budget(steps=2.5), Budget(seconds=float("nan"))])  # fmt: skip
def test_bad_budgets_are_refused(bad: Budget) -> None:
    with pytest.raises(PrivpartError, match="budget"):
        make_attack("decoder", bad)


def test_budget_clock_defaults_and_scaling() -> None:
    clock = Budget().clock(30.0, 3000)
    assert (clock.seconds, clock.steps) == (30.0, 3000)
    assert Budget(steps=7).clock(30.0, 3000).seconds is None
    bigger = Budget().scaled(4, 30.0).clock(30.0, 3000)
    assert bigger.seconds == 120.0 and bigger.steps == 12000  # the cap grows with the budget
    assert Budget(steps=10).scaled(0.5, 30.0) == Budget(steps=5)


def test_clock_stops_at_steps_and_reports_fraction() -> None:
    clock = Clock(None, 4)
    seen = 0
    while not clock.done:
        assert 0 <= clock.fraction < 1
        clock.tick()
        seen += 1
    assert seen == 4 and clock.fraction == 1.0
    assert Clock(0.0, 10**9).done  # a spent deadline stops at once


def test_result_roundtrips_through_json_with_its_declarations() -> None:
    from privpart.metrics import REID, SSIM

    r = AttackResult(
        "decoder", ThreatModel.BLACK_BOX_QUERY, "block1",
        {"ssim": MetricResult(SSIM.spec, Estimate(0.5, Interval(0.45, 0.55), 32),
                              {"aux_mean": 0.1, "task_floor": 0.3}),
         "reid": MetricResult(REID.spec, Estimate(float("nan")), {"chance": 0.1})},
        {"budget": {"seconds": 1.0}, "x": [1, 2], "nan": float("nan")}, 1.5,
        samples=torch.zeros(2, 1, 4, 4),
    )  # fmt: skip
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    back = AttackResult.from_dict(d)
    assert back.ssim == 0.5 and back.metric("ssim").estimate.interval == Interval(0.45, 0.55)
    assert back.metric("ssim").spec == SSIM.spec and back.metric("reid").spec == REID.spec
    assert back.metric("reid").value != back.metric("reid").value  # NaN survives as null
    assert back.threat_model is ThreatModel.BLACK_BOX_QUERY and back.samples is None
    assert back.config["nan"] is None
    with pytest.raises(AttributeError):
        _ = back.nope
    with pytest.raises(PrivpartError, match="no metric 'nope'"):
        back.metric("nope")
