from __future__ import annotations

import json
import math

import pytest

from privpart.metrics.spec import (
    BaselineSpec,
    Cap,
    Direction,
    LimitRule,
    Margin,
    MetricSpec,
    Ratio,
)

SSIM = MetricSpec("ssim", "SSIM", Direction.HIGHER, Margin(0.1, floor=0.4),
                  (BaselineSpec("aux_mean", "aux-mean image"),
                   BaselineSpec("task_floor", "task-label floor")))  # fmt: skip
ACC = MetricSpec("accuracy", "accuracy", Direction.HIGHER, Margin(0.1),
                 (BaselineSpec("majority", "majority"), BaselineSpec("chance", "chance", False)))
MAE = MetricSpec("feature_mae", "feature MAE", Direction.LOWER, Ratio(0.5),
                 (BaselineSpec("aux_mean", "aux-mean row"),), fmt=".3f")  # fmt: skip


def test_margin_over_the_larger_baseline_and_never_under_the_floor() -> None:
    assert SSIM.limit.limit(SSIM, {"aux_mean": 0.18, "task_floor": 0.45}).value == pytest.approx(
        0.55
    )
    low = SSIM.limit.limit(SSIM, {"aux_mean": 0.1, "task_floor": 0.2})
    assert low.value == 0.4 and low.reference == "floor"
    assert "task-label floor 0.45" in SSIM.limit.limit(SSIM, {"task_floor": 0.45}).reference
    # a baseline that is not judged (chance) does not move the limit
    assert ACC.limit.limit(ACC, {"majority": 0.3, "chance": 0.9}).value == pytest.approx(0.4)


def test_lower_is_leakier_rules_and_caps() -> None:
    assert MAE.limit.limit(MAE, {"aux_mean": 0.2}).value == pytest.approx(0.1)
    assert Direction.LOWER.beyond(0.05, 0.1) and not Direction.HIGHER.beyond(0.05, 0.1)
    assert Cap(0.5).limit(SSIM, {"task_floor": 0.9}).value == 0.5
    assert math.isinf(Margin(0.1).limit(ACC, {}).value)  # nothing to compare with: never breaks


def test_specs_and_rules_roundtrip_through_json() -> None:
    for spec in (SSIM, ACC, MAE, SSIM.with_limit(None), SSIM.with_limit(Cap(0.3))):
        back = MetricSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
        assert back == spec
    assert LimitRule.from_dict({"rule": "ratio", "ratio": 0.25}) == Ratio(0.25)
    assert SSIM.limit.describe(SSIM) == "SSIM > max(0.4, aux-mean image / task-label floor + 0.1)"
    assert MAE.limit.describe(MAE) == "feature MAE < 0.5 x aux-mean row"
