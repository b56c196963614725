"""Scoring shared by every reconstruction attack: metrics against victims, plus the baselines
(aux-mean image, aux-mean row for tabular data) that a score has to beat to mean anything, and
for images the *task-label floor* (`task_floor_ssim`/`_psnr`/`_mse`: the aux mean image of each
victim's task label, which the untrusted side can draw from the prediction it computes)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from privpart.attacks.base import FeatureSet
from privpart.metrics import (
    image_scores,
    label_mean_image_baseline,
    mean_image_baseline,
    mean_row_baseline,
    per_feature_mae,
)
from privpart.metrics.tabular import default_feature_names

SAMPLES = 16  # reconstructions kept for grids
# Bump when the metrics or baselines a result carries change: cached audit results are keyed on it.
SCORING_VERSION = 2


@dataclass
class Scored:
    metrics: dict[str, float]
    baselines: dict[str, float]
    per_feature: dict[str, float] | None
    config: dict
    samples: Tensor
    sample_inputs: Tensor


def score_reconstruction(fs: FeatureSet, recon: Tensor, victims: Tensor) -> Scored:
    """Score reconstructions of `victims` (the first rows of fs.victim_inputs)."""
    recon = recon.detach().float().clamp(0, 1)
    metrics, extra = image_scores(recon, victims)
    baselines = mean_image_baseline(fs.aux_inputs, victims)
    if fs.kind == "image" and fs.task in fs.aux_attributes and fs.task in fs.victim_attributes:
        floor = label_mean_image_baseline(
            fs.aux_inputs,
            fs.aux_attributes[fs.task],
            victims,
            fs.victim_attributes[fs.task][: victims.shape[0]],
        )
        baselines.update({f"task_floor_{k}": v for k, v in floor.items()})
    config: dict = {**extra, "victims_scored": int(victims.shape[0])}
    per_feature = None
    if fs.kind == "tabular":
        names = fs.feature_names or default_feature_names(
            fs.native_size[0] * fs.native_size[1] if fs.native_size else victims[0].numel()
        )
        native = fs.native_size or tuple(victims.shape[2:])
        metrics = {k: v for k, v in metrics.items() if k != "ssim"}
        baselines = {k: v for k, v in baselines.items() if k != "ssim"}
        metrics["feature_mae"], per_feature = per_feature_mae(recon, victims, native, names)
        baselines["feature_mae"], config["baseline_per_feature"] = mean_row_baseline(
            fs.aux_inputs, victims, native, names
        )
        config["native_size"] = list(native)
    return Scored(metrics, baselines, per_feature, config, recon[:SAMPLES].clone(),
                  victims[:SAMPLES].clone())  # fmt: skip
