"""What an attacker gets for free, without looking at the features: every score is read
against these. Both are fitted on auxiliary data only and applied to the victims."""

from __future__ import annotations

import torch
from torch import Tensor

from privpart.metrics.image import image_scores


def mean_image_baseline(aux_inputs: Tensor, victim_inputs: Tensor) -> dict[str, float]:
    """SSIM/PSNR/MSE of the aux-set mean image guessed for every victim."""
    guess = aux_inputs.float().mean(0, keepdim=True).expand_as(victim_inputs)
    scores, _ = image_scores(guess, victim_inputs)
    return scores


def majority_baseline(
    aux_labels: Tensor, victim_labels: Tensor, n_classes: int
) -> dict[str, float]:
    """accuracy: the aux majority class guessed for every victim; chance: 1 / classes."""
    accuracy = float((victim_labels.long() == majority_class(aux_labels, n_classes)).float().mean())
    return {"accuracy": accuracy, "chance": 1.0 / max(n_classes, 1)}


def majority_class(labels: Tensor, n_classes: int) -> int:
    return int(torch.bincount(labels.long(), minlength=n_classes).argmax())
