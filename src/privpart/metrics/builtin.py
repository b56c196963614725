"""The built-in metrics, by the output kind they score.

Reconstruction attacks are scored by SSIM, PSNR, MSE and re-identification (images) or
per-feature error and re-identification (tabular rows); attribute attacks by accuracy. Each is a
`Metric`: its declaration (`MetricSpec`, with its limit rule and, where the user may move that
limit, a `LimitOption` behind `--max-<name>`) plus how it is computed and its baselines.

Baselines are what the untrusted side gets without looking at the features: the aux-mean image
or row, the *task-label floor* (the aux mean image of each victim's task label, or the
attribute guessed from the task label: the tail computes every prediction, so what the label
reveals leaks at every cut), the aux majority class, chance.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from privpart.errors import PrivpartError
from privpart.metrics.baselines import majority_class, task_floor_baseline
from privpart.metrics.image import per_image_mse, per_image_psnr, per_image_ssim
from privpart.metrics.metric import AttackOutput, Baselines, Metric, PerVictim, Truth
from privpart.metrics.reid import DEFAULT_K, lineups, reidentification_hits
from privpart.metrics.spec import (
    BaselineSpec,
    Direction,
    LimitOption,
    Margin,
    MetricSpec,
    Ratio,
)
from privpart.metrics.tabular import per_row_mae, to_native_cells

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
        option=LimitOption("ssim", "floor",
                           "SSIM above max(this, baseline + margin) breaks a cut"),
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
        option=LimitOption("reid", "cap",
                           "re-identification above this breaks a cut (default: chance + 0.1)"),
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
        option=LimitOption("attribute_advantage", "margin",
                           "attribute accuracy above max(majority, task floor) + this breaks"),
    ),  # fmt: skip
    _hits,
    _attribute_baselines,
    needs="predictions",
)


# output kind (`Attack.output`) -> the metrics it is scored by
METRICS_BY_OUTPUT: Mapping[str, tuple[Metric, ...]] = {
    "reconstruction": (SSIM, PSNR, MSE, FEATURE_MAE, REID),
    "attribute": (ACCURACY,),
}


@functools.cache
def metric_specs() -> dict[str, MetricSpec]:
    """Every built-in metric's declaration by name (for options that name a metric)."""
    return {m.spec.name: m.spec for ms in METRICS_BY_OUTPUT.values() for m in ms}


def limit_options() -> dict[str, LimitOption]:
    """metric name -> the option that moves its limit, for the built-ins that declare one."""
    return {name: s.option for name, s in metric_specs().items() if s.option is not None}
