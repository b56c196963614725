"""Which private attributes a defence can hide: one the task label does not determine.

If the attribute is a function of the task label (Fashion-MNIST's `group` under the 10-class
task), the server reads it off the tail's output whatever the head does: hiding it would mean
destroying the task. The sound setup trains on the coarse label and hides the fine one
(`--task group`, private attribute `class`): the group is then all the server should learn.
"""

from __future__ import annotations

import torch

from privpart.attacks import available_attributes
from privpart.data import Attribute, Dataset
from privpart.errors import PrivpartValueError


def determined_by(values: torch.Tensor, labels: torch.Tensor) -> bool:
    """Whether `values` is a function of `labels` (one value per label) on these samples."""
    pairs = torch.unique(torch.stack([labels.long(), values.long()]), dim=1)
    return pairs.shape[1] == torch.unique(labels).numel()


def resolve_private_attribute(
    available: dict[str, Attribute], name: str, ds: Dataset, task: str
) -> Attribute:
    """The attribute `name`, checked to be hideable without destroying the task."""
    if name not in available:
        raise PrivpartValueError(
            f"dataset {ds.name} has no attribute {name!r} to hide",
            f"choose `private_attribute` from: {', '.join(sorted(available))}",
            param="private_attribute",
        )
    if name == task:
        raise PrivpartValueError(
            f"the private attribute {name!r} is the model's task label",
            "the server learns the task label from the output anyway; train the model on "
            "another task (`task=group`) and hide a finer attribute (class)",
            param="private_attribute",
        )
    attr = available[name]
    if determined_by(attr.values, ds.labels):
        raise PrivpartValueError(
            f"the private attribute {name!r} is a function of the task label {task!r}: no "
            "defence can hide it without destroying the task",
            "hide an attribute the task does not determine, e.g. train the model with "
            "`task=group` and hide class",
            param="private_attribute",
        )
    return attr


def private_attribute_of(ds: Dataset, meta: dict, name: str) -> Attribute:
    """`resolve_private_attribute` for a defended checkpoint: every attribute the attacks know,
    against the model's task (from its meta.json)."""
    return resolve_private_attribute(available_attributes(ds), name, ds, meta.get("task", "class"))
