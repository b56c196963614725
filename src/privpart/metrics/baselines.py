"""What an attacker gets for free, without looking at the features: every score is read
against these guesses. All are fitted on auxiliary data only and applied to the victims; the
built-in metrics (`privpart.metrics.builtin`) score them like an attack's output."""

from __future__ import annotations

import torch
from torch import Tensor


def mean_image_guess(aux_inputs: Tensor, victim_inputs: Tensor) -> Tensor:
    """The aux-set mean image, once per victim: the guess that needs no features at all."""
    return aux_inputs.float().mean(0, keepdim=True).expand_as(victim_inputs)


def label_means(flat: Tensor, labels: Tensor, n: int) -> Tensor:
    """(n, features): the mean row of `flat` per label; labels without rows get the overall mean."""
    labels = labels.long()
    sums = torch.zeros(n, flat.shape[1]).index_add_(0, labels, flat)
    counts = torch.bincount(labels, minlength=n).unsqueeze(1)
    return torch.where(counts > 0, sums / counts.clamp_min(1), flat.mean(0, keepdim=True))


def joint_counts(rows: Tensor, cols: Tensor, n_rows: int, n_cols: int) -> Tensor:
    """(n_rows, n_cols) float table: how often each (row label, column label) pair occurs."""
    return torch.zeros(n_rows, n_cols).index_put_(
        (rows.long(), cols.long()), torch.ones(rows.numel()), accumulate=True
    )


def label_mean_guess(
    aux_inputs: Tensor, aux_labels: Tensor, victim_inputs: Tensor, victim_labels: Tensor
) -> Tensor:
    """The aux mean image of each victim's task label (labels absent from aux: the overall
    mean), shaped like `victim_inputs`."""
    flat = aux_inputs.float().flatten(1)
    n = int(max(aux_labels.max(), victim_labels.max())) + 1
    return label_means(flat, aux_labels, n)[victim_labels.long()].view_as(victim_inputs)


def majority_class(labels: Tensor, n_classes: int) -> int:
    return int(torch.bincount(labels.long(), minlength=n_classes).argmax())


def task_floor_baseline(
    aux_task: Tensor, aux_attribute: Tensor, victim_task: Tensor, victim_attribute: Tensor
) -> float:
    """Attribute accuracy from the task label alone: per task label, the aux majority attribute.

    The untrusted side learns every prediction (the tail computes it), so whatever the task
    label reveals about the attribute leaks at *every* cut; a cut only adds leakage above this.
    """
    n_task = int(max(aux_task.max(), victim_task.max())) + 1
    n_attr = int(max(aux_attribute.max(), victim_attribute.max())) + 1
    joint = joint_counts(aux_task, aux_attribute, n_task, n_attr)
    guess = joint.argmax(1)
    guess[joint.sum(1) == 0] = majority_class(aux_attribute, n_attr)
    return float((guess[victim_task.long()] == victim_attribute.long()).float().mean())
