"""The one scorer: an attack's output against the victims' truth, metric by declared metric.

The metrics live in `privpart.metrics` (declaration, computation, baselines): an attack is
scored by its output kind's built-in metrics, or by the `metrics` its class declares. Every
figure is a mean over victims with a bootstrap 95 % interval (`metrics.uncertainty`).
"""

from __future__ import annotations

import time

from privpart.attacks.base import Attack, AttackOutput
from privpart.attacks.features import FeatureSet
from privpart.attacks.result import AttackResult, MetricResult
from privpart.errors import PrivpartError
from privpart.metrics.builtin import METRICS_BY_OUTPUT
from privpart.metrics.image import ssim_window
from privpart.metrics.metric import Metric, Truth
from privpart.metrics.tabular import per_feature_mae
from privpart.metrics.uncertainty import bootstrap

SAMPLES = 16  # reconstructions kept for grids
# Bump when the metrics or baselines a result carries change: cached audit results are keyed on it.
SCORING_VERSION = 3


def metrics_for(attack: type[Attack] | Attack) -> tuple[Metric, ...]:
    """The metrics an attack is scored by: its own declaration, else its output kind's."""
    return attack.metrics if attack.metrics is not None else METRICS_BY_OUTPUT[attack.output]


# -- the scorer -----------------------------------------------------------------------------
def score(
    attack: Attack, output: AttackOutput, fs: FeatureSet, config: dict, seconds: float
) -> AttackResult:
    """The typed result of `attack`'s `output` on `fs`'s victims (see the module docstring)."""
    start = time.perf_counter()
    n = fs.victim_inputs.shape[0]
    metrics = metrics_for(attack)
    read = {m.needs for m in metrics}
    given = output.kinds()
    if not given:
        raise PrivpartError(
            f"attack {attack.name!r} returned no output",
            f"return an AttackOutput with what its metrics read: {', '.join(sorted(read))}",
        )
    unread = sorted(set(given) - read)
    if unread:
        raise PrivpartError(
            f"attack {attack.name!r} returned {', '.join(unread)}, which none of its metrics "
            "reads",
            f"declare a Metric with needs={unread[0]!r} in the attack's `metrics`",
        )
    k = int(next(iter(given.values())).shape[0])
    if not 0 < k <= n:
        raise PrivpartError(
            f"attack {attack.name!r} answered for {k} victims, there are {n}",
            "reconstruct or predict the first k <= n intercepted feature rows",
        )
    truth = Truth(fs, k, output.attribute, attack.seed)
    results: dict[str, MetricResult] = {}
    for metric in metrics:
        if not metric.applies(fs.kind, output):
            continue
        values = metric.per_victim(output, truth)
        results[metric.spec.name] = MetricResult(
            metric.spec, bootstrap(values, seed=attack.seed), metric.baselines(truth)
        )
    extra: dict = {"victims_scored": k, **output.info}
    samples = sample_inputs = per_feature = None
    if output.reconstructions is not None:
        recon = output.reconstructions.detach().float().cpu().clamp(0, 1)
        samples, sample_inputs = recon[:SAMPLES].clone(), truth.victims[:SAMPLES].clone()
        if fs.kind == "image":
            window = ssim_window(*truth.victims.shape[2:])
            extra["ssim_window"] = None if window is None else window.to_dict()
        if fs.kind == "tabular":
            native, names = truth.native
            _, per_feature = per_feature_mae(recon, truth.victims, native, names)
            guess = truth.guess("aux_mean")
            assert guess is not None
            _, extra["baseline_per_feature"] = per_feature_mae(guess, truth.victims, native, names)
            extra["native_size"] = list(native)
        if "reid" in results:
            extra["reid_lineup"] = truth.reid_k
    if output.predictions is not None and output.attribute is not None:
        classes = fs.attribute_classes[output.attribute]
        labels = truth.labels(output.attribute)
        assert labels is not None
        extra.update(
            attribute=output.attribute,
            classes=classes,
            sample_truth=[classes[i] for i in labels[:SAMPLES].tolist()],
            sample_predictions=[classes[i] for i in output.predictions[:SAMPLES].tolist()],
        )
        sample_inputs = fs.victim_inputs[:SAMPLES].clone()
    return AttackResult(
        attack=attack.name,
        threat_model=attack.threat_model,
        cut=fs.cut.name,
        metrics=results,
        config={**config, **extra},
        seconds=seconds + time.perf_counter() - start,
        samples=samples,
        sample_inputs=sample_inputs,
        per_feature=per_feature,
    )
