"""The one scorer: an attack's output against the victims' truth, metric by declared metric.

Each `Metric` is a declaration (`MetricSpec`: name, direction, baselines, limit rule) plus how
to compute it per victim and its baselines. Reconstruction attacks are scored by SSIM, PSNR,
MSE and re-identification (images) or per-feature error and re-identification (tabular rows);
attribute attacks by accuracy; an attack class may declare its own `metrics` instead. Every
figure is a mean over victims with a bootstrap 95 % interval (`metrics.uncertainty`).

Baselines are what the untrusted side gets without looking at the features: the aux-mean image
or row, the *task-label floor* (the aux mean image of each victim's task label, or the
attribute guessed from the task label: the tail computes every prediction, so what the label
reveals leaks at every cut), the aux majority class, chance.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from privpart.attacks.base import Attack, AttackOutput, Output
from privpart.attacks.features import FeatureSet
from privpart.attacks.result import AttackResult, MetricResult
from privpart.errors import PrivpartError
from privpart.metrics.baselines import (
    label_mean_guess,
    majority_class,
    mean_image_guess,
    task_floor_baseline,
)
from privpart.metrics.image import per_image_mse, per_image_psnr, per_image_ssim, ssim_window
from privpart.metrics.reid import DEFAULT_K, lineups, reidentification_hits
from privpart.metrics.spec import (
    BaselineSpec,
    Direction,
    Margin,
    MetricSpec,
    Ratio,
)
from privpart.metrics.tabular import (
    default_feature_names,
    per_feature_mae,
    per_row_mae,
    to_native_cells,
)
from privpart.metrics.uncertainty import bootstrap

SAMPLES = 16  # reconstructions kept for grids
# Bump when the metrics or baselines a result carries change: cached audit results are keyed on it.
SCORING_VERSION = 3


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


@dataclass(frozen=True)
class Metric:
    """A declared metric: the spec every reader sees, plus how the scorer computes it."""

    spec: MetricSpec
    per_victim: PerVictim
    baselines: Baselines = lambda truth: {}
    kinds: frozenset[str] = frozenset({"image", "tabular"})
    needs: str = "reconstructions"  # the AttackOutput field it reads

    def applies(self, kind: str, output: AttackOutput) -> bool:
        return kind in self.kinds and getattr(output, self.needs) is not None


# -- image and tabular reconstruction -------------------------------------------------------
IMAGE_BASELINES = (
    BaselineSpec("aux_mean", "aux-mean image"),
    BaselineSpec("task_floor", "task-label floor"),
)


def _recon(output: AttackOutput) -> Tensor:
    assert output.reconstructions is not None
    return output.reconstructions.detach().float().cpu().clamp(0, 1)


def _image_metric(per_image: Callable[[Tensor, Tensor], Tensor]) -> tuple[PerVictim, Baselines]:
    def values(output: AttackOutput, truth: Truth) -> Tensor:
        return per_image(_recon(output), truth.victims)

    def baselines(truth: Truth) -> dict[str, float]:
        out = {}
        for name in ("aux_mean", "task_floor"):
            guess = truth.guess(name)
            if guess is not None:
                out[name] = float(per_image(guess, truth.victims).nanmean())
        return out

    return values, baselines


def _reid(output: AttackOutput, truth: Truth) -> Tensor:
    recon, pool = _recon(output), truth.fs.victim_inputs
    if truth.kind == "tabular":  # compare rows on their native cells, not on the upsampled grid
        native, names = truth.native
        recon = to_native_cells(recon, native, len(names))
        pool = to_native_cells(pool, native, len(names))
    hits, _ = reidentification_hits(
        recon, pool, torch.arange(truth.k), truth.task_labels, truth.reid_k, truth.seed
    )
    return hits


def _reid_chance(truth: Truth) -> dict[str, float]:
    ups = lineups(torch.arange(truth.k), truth.task_labels, truth.fs.victim_inputs.shape[0],
                  truth.reid_k, truth.seed)  # fmt: skip
    return {"chance": float(ups.chance.nanmean())}


def _row_mae(output: AttackOutput, truth: Truth) -> Tensor:
    native, names = truth.native
    return per_row_mae(_recon(output), truth.victims, native, len(names))


def _row_mae_baseline(truth: Truth) -> dict[str, float]:
    native, names = truth.native
    guess = truth.guess("aux_mean")
    assert guess is not None
    return {"aux_mean": float(per_row_mae(guess, truth.victims, native, len(names)).mean())}


SSIM = Metric(
    MetricSpec(
        "ssim", "SSIM", Direction.HIGHER, Margin(0.1, floor=0.4), IMAGE_BASELINES,
        summary="structural similarity of reconstructions to the victims' inputs (1 = same)",
    ),  # fmt: skip
    *_image_metric(per_image_ssim),
    kinds=frozenset({"image"}),
)
PSNR = Metric(
    MetricSpec("psnr", "PSNR dB", Direction.HIGHER, None, IMAGE_BASELINES, fmt=".1f",
               summary="peak signal-to-noise ratio, capped at 100 dB"),  # fmt: skip
    *_image_metric(per_image_psnr),
)
MSE = Metric(
    MetricSpec("mse", "MSE", Direction.LOWER, None, IMAGE_BASELINES, fmt=".4f",
               summary="mean squared pixel error"),  # fmt: skip
    *_image_metric(per_image_mse),
)
REID = Metric(
    MetricSpec(
        "reid", "re-identification", Direction.HIGHER, Margin(0.1),
        (BaselineSpec("chance", "chance"),), chance="chance",
        summary=f"how often the reconstruction picks its own input out of {DEFAULT_K} "
        "candidates of the same task label (nearest by pixel error)",
    ),  # fmt: skip
    _reid,
    _reid_chance,
)
FEATURE_MAE = Metric(
    MetricSpec(
        "feature_mae", "feature MAE", Direction.LOWER, Ratio(0.5),
        (BaselineSpec("aux_mean", "aux-mean row"),), fmt=".3f",
        summary="mean absolute error per column of the recovered rows",
    ),  # fmt: skip
    _row_mae,
    _row_mae_baseline,
    kinds=frozenset({"tabular"}),
)


# -- attribute inference --------------------------------------------------------------------
def _attribute(truth: Truth) -> str:
    if truth.attribute is None or truth.labels(truth.attribute) is None:
        raise PrivpartError(
            f"the attack predicted attribute {truth.attribute!r}, which the victims do not have",
            "set AttackOutput.attribute to one of the dataset's attributes",
        )
    return truth.attribute


def _hits(output: AttackOutput, truth: Truth) -> Tensor:
    assert output.predictions is not None
    labels = truth.labels(_attribute(truth))
    assert labels is not None
    return (output.predictions.cpu().long() == labels[: truth.k].long()).float()


def _attribute_baselines(truth: Truth) -> dict[str, float]:
    fs, name = truth.fs, _attribute(truth)
    aux, victims = fs.aux_attributes[name], fs.victim_attributes[name][: truth.k]
    n_classes = len(fs.attribute_classes[name])
    out = {
        "majority": float((victims.long() == majority_class(aux, n_classes)).float().mean()),
        "chance": 1.0 / max(n_classes, 1),
    }
    task = fs.task
    if task != name and task in fs.aux_attributes and task in fs.victim_attributes:
        out["task_floor"] = task_floor_baseline(
            fs.aux_attributes[task], aux, fs.victim_attributes[task][: truth.k], victims
        )
    return out


ACCURACY = Metric(
    MetricSpec(
        "accuracy", "attribute accuracy", Direction.HIGHER, Margin(0.1),
        (BaselineSpec("majority", "majority class"), BaselineSpec("task_floor", "task-label floor"),
         BaselineSpec("chance", "chance", judged=False)),
        chance="chance",
        summary="how often the private attribute is inferred from the features",
    ),  # fmt: skip
    _hits,
    _attribute_baselines,
    needs="predictions",
)

METRICS_BY_OUTPUT: Mapping[Output, tuple[Metric, ...]] = {
    Output.RECONSTRUCTION: (SSIM, PSNR, MSE, FEATURE_MAE, REID),
    Output.ATTRIBUTE: (ACCURACY,),
}


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
    if output.reconstructions is not None:
        k = int(output.reconstructions.shape[0])
    elif output.predictions is not None:
        k = int(output.predictions.shape[0])
    else:
        raise PrivpartError(
            f"attack {attack.name!r} returned no reconstructions and no predictions",
            "return an AttackOutput with one of them",
        )
    if not 0 < k <= n:
        raise PrivpartError(
            f"attack {attack.name!r} answered for {k} victims, there are {n}",
            "reconstruct or predict the first k <= n intercepted feature rows",
        )
    truth = Truth(fs, k, output.attribute, attack.seed)
    results: dict[str, MetricResult] = {}
    for metric in metrics_for(attack):
        if not metric.applies(fs.kind, output):
            continue
        values = metric.per_victim(output, truth)
        results[metric.spec.name] = MetricResult(
            metric.spec, bootstrap(values, seed=attack.seed), metric.baselines(truth)
        )
    extra: dict = {"victims_scored": k, **output.info}
    samples = sample_inputs = per_feature = None
    if output.reconstructions is not None:
        recon = _recon(output)
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


@functools.cache
def metric_specs() -> dict[str, MetricSpec]:
    """Every built-in metric's declaration by name (for options that name a metric)."""
    return {m.spec.name: m.spec for ms in METRICS_BY_OUTPUT.values() for m in ms}
