from __future__ import annotations

import json

import pytest
import torch

from privpart.attacks import (
    ATTACKS,
    DEFAULT_ATTACKS,
    THREAT_MODELS,
    AttackResult,
    Budget,
    make_attack,
)
from privpart.attacks.base import Clock
from privpart.errors import PrivpartError


def test_registry_has_every_default_attack_with_a_threat_model() -> None:
    assert set(DEFAULT_ATTACKS) <= set(ATTACKS.names())
    for name in DEFAULT_ATTACKS:
        cls = ATTACKS.get(name)
        assert cls.name == name and cls.threat_model in THREAT_MODELS
    assert ATTACKS.get("cgan").threat_model == "black-box query"
    assert ATTACKS.get("whitebox").threat_model == "white-box"


def test_make_attack_gives_new_instances_and_checks_params() -> None:
    a, b = make_attack("decoder"), make_attack("decoder")
    assert a is not b and a.params is not b.params
    assert make_attack("cgan", l1_weight=10.0).params["l1_weight"] == 10.0
    with pytest.raises(PrivpartError, match="no parameter"):
        make_attack("decoder", l1_weight=3)
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


def test_result_roundtrips_through_json() -> None:
    r = AttackResult("decoder", "black-box query", "block1", {"ssim": 0.5, "psnr": 20.0},
                     {"ssim": 0.1, "psnr": 10.0}, {"budget": {"seconds": 1.0}, "x": [1, 2]},
                     1.5, samples=torch.zeros(2, 1, 4, 4))  # fmt: skip
    d = json.loads(json.dumps(r.to_dict()))
    assert {"attack", "threat_model", "cut", "metrics", "baselines", "config", "seconds"} <= set(d)
    back = AttackResult.from_dict(d)
    assert back.metrics == r.metrics and back.config == r.config and back.samples is None
