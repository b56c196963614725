"""Scoring shared by every reconstruction attack: metrics against victims, plus the baselines
(aux-mean image, aux-mean row for tabular data) that a score has to beat to mean anything."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from privpart.attacks.base import FeatureSet
from privpart.metrics import (
    image_scores,
    mean_image_baseline,
    mean_row_baseline,
    per_feature_mae,
)
from privpart.metrics.tabular import default_feature_names

SAMPLES = 16  # reconstructions kept for grids


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
