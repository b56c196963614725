"""Leakage attacks at a cut: c-GAN and decoder reconstruction (black-box query), optimisation
inversion (white-box), attribute inference (attribute); one file each, a registry, a contract.

    fs = compute_feature_sets(partition, ds, splits, cuts, (32, 32))["features.4"]
    result = run_attack("decoder", fs, Budget(seconds=30))
    result.metrics["ssim"], result.baselines["ssim"]

Default budgets (time budget with a step cap; about 110 s for all four at one VGG-16 cut on
2 CPU cores): cgan 40 s, decoder 30 s, whitebox 30 s, attribute 10 s.
"""

from __future__ import annotations

from typing import Any

from privpart.attacks import attribute as _attribute  # noqa: F401  (fill the registry)
from privpart.attacks import cgan as _cgan  # noqa: F401
from privpart.attacks import decoder as _decoder  # noqa: F401
from privpart.attacks import whitebox as _whitebox  # noqa: F401
from privpart.attacks.attributes import available_attributes, default_attribute
from privpart.attacks.base import (
    THREAT_MODELS,
    Attack,
    AttackResult,
    Budget,
    FeatureSet,
)
from privpart.attacks.features import compute_feature_sets
from privpart.attacks.registry import ATTACKS

DEFAULT_ATTACKS: list[str] = ["cgan", "decoder", "whitebox", "attribute"]


def make_attack(name: str, budget: Budget | None = None, seed: int = 0, **params: Any) -> Attack:
    """A new, unfitted instance of the attack registered as `name`."""
    return ATTACKS.get(name)(budget, seed, **params)


def run_attack(
    name: str, fs: FeatureSet, budget: Budget | None = None, seed: int = 0, **params: Any
) -> AttackResult:
    """Make, fit on aux, evaluate on victims."""
    attack = make_attack(name, budget, seed, **params)
    attack.fit(fs)
    return attack.evaluate(fs)


__all__ = [
    "ATTACKS", "DEFAULT_ATTACKS", "THREAT_MODELS", "Attack", "AttackResult", "Budget",
    "FeatureSet", "available_attributes", "compute_feature_sets", "default_attribute",
    "make_attack", "run_attack",
]  # fmt: skip
