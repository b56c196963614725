"""Leakage attacks at a cut, one file each, a registry, a contract:

- black-box query: `decoder` (inverse network), `cgan` (pix2pix), `denoiser` (decoder on
  fresh queries of augmented aux images), `prior-decoder` (a decoder's guess projected onto a
  VAE prior, candidates judged by queries);
- white-box: `whitebox` (exact inversion where the head is invertible: projected Adam,
  restarts, TV weight chosen on aux), `prior` (latent search in a VAE trained on aux);
- no head access: `fora` (substitute head matched to the intercepted features in distribution);
- attribute: `attribute` (private-attribute inference).

    fs = compute_feature_sets(partition, ds, splits, cuts, (32, 32))["features.4"]
    result = run_attack("decoder", fs, Budget(seconds=30))
    result.ssim, result.metric("ssim").estimate.interval, result.metric("reid").baselines

An attack only ever sees the `AttackerView` its threat model grants (`view.py`); the framework
scores its output (`scoring.py`). The audit's default attacks are the strongest per cut in
`bench/results/attack_strength.md` (decoder 30 s, whitebox 60 s, prior 60 s, attribute 10 s;
the prior's VAE is trained once per audit, so about 2 minutes per VGG-16 cut on 2 CPU cores);
attacks that know a checkpoint's defence join automatically (`adaptive.py`).
"""

from __future__ import annotations

import time
from typing import Any

from privpart.attacks import attribute_inference as _attribute_inference  # noqa: F401  (fill the registry)
from privpart.attacks import cgan as _cgan  # noqa: F401
from privpart.attacks import decoder as _decoder  # noqa: F401
from privpart.attacks import denoiser as _denoiser  # noqa: F401
from privpart.attacks import fora as _fora  # noqa: F401
from privpart.attacks import prior as _prior  # noqa: F401
from privpart.attacks import whitebox as _whitebox  # noqa: F401
from privpart.attacks.attribute_choice import available_attributes, default_attribute
from privpart.attacks.base import Attack, AttackOutput, Budget, Output
from privpart.attacks.features import FeatureSet, compute_feature_sets
from privpart.attacks.registry import ATTACKS
from privpart.attacks.result import AttackResult, MetricResult
from privpart.attacks.scoring import metrics_for, score
from privpart.attacks.threat import ThreatModel, ThreatModelError
from privpart.attacks.view import AttackerView
from privpart.metrics import Metric

DEFAULT_ATTACKS: tuple[str, ...] = ("decoder", "whitebox", "prior", "attribute")


def make_attack(name: str, budget: Budget | None = None, seed: int = 0, **params: Any) -> Attack:
    """A new, unfitted instance of the attack registered as `name`."""
    return ATTACKS.get(name)(budget, seed, **params)


def run_attack(
    name: str | Attack, fs: FeatureSet, budget: Budget | None = None, seed: int = 0, **params: Any
) -> AttackResult:
    """Make (or take) an attack, fit and run it on the view its threat model grants, score it."""
    attack = make_attack(name, budget, seed, **params) if isinstance(name, str) else name
    start = time.perf_counter()
    view = AttackerView.of(fs, attack.threat_model)
    attack.fit(view)
    attack.fitted = True
    output = attack.run(view)
    return score(attack, output, fs, attack.config(view), time.perf_counter() - start)


__all__ = [
    "ATTACKS", "DEFAULT_ATTACKS", "Attack", "AttackOutput", "AttackResult", "AttackerView",
    "Budget", "FeatureSet", "Metric", "MetricResult", "Output", "ThreatModel", "ThreatModelError",
    "available_attributes", "compute_feature_sets", "default_attribute", "make_attack",
    "metrics_for", "run_attack",
]  # fmt: skip
