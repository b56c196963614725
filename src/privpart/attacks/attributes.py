"""Private attributes the attribute-inference attack can target, and the default per dataset.

An attribute is a per-sample label. Two sources:
- the dataset's own attributes (`Dataset.attributes`): Fashion-MNIST `class` (10 garments) and
  `group` (tops / bottoms / footwear / bags); TON_IoT `class` (attack type), `proto`
  (tcp/udp/icmp...) and `service` (http, dns, ssl...); any other dataset `class`;
- derived attributes, functions of the raw input registered below (`@DERIVED.register`):
  `brightness` for image datasets.

Default (`default_attribute`): the first entry of the dataset's preference list that is neither
the model's task label nor a function of it, since the server learns the task label from the
output anyway (the audit also reads every attribute score against that *task-label floor*):
- fashion-mnist: `group` (the kind of item a user holds) for models whose task is not `class`;
  `class` for a `group`-task model; `brightness` (a property of the input, not of its label) for
  a `class`-task model, whose label determines the group.
- ton-iot: `service`, then `proto` (the application a flow belongs to, not its attack label).
- anything else: `class` (no private attribute distinct from the task is known: the attack then
  measures how readable the task label is at the cut).
`--attribute NAME` overrides the default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from privpart.data import Attribute, Dataset
from privpart.errors import PrivpartError
from privpart.registry import Registry

PREFERENCES: dict[str, list[str]] = {
    "fashion-mnist": ["group", "class", "brightness"],
    "ton-iot": ["service", "proto", "class"],
}
# attribute -> the tasks that determine it (the server reads it off the prediction)
DETERMINED_BY: dict[str, dict[str, set[str]]] = {"fashion-mnist": {"group": {"class"}}}
FALLBACK = ["class"]

DERIVED: Registry[Callable[[Dataset], Attribute | None]] = Registry("derived attribute")


@DERIVED.register("brightness")
def brightness(ds: Dataset) -> Attribute | None:
    """Mean-intensity tercile of the image (dark / medium / bright), thresholds over the whole
    dataset: a property of the photographed item, not of its label. Images only."""
    if ds.kind != "image":
        return None
    x = ds.images.float()
    mean = x.flatten(1).mean(1) / (255.0 if ds.images.dtype == torch.uint8 else 1.0)
    cuts = torch.quantile(mean, torch.tensor([1 / 3, 2 / 3]))
    return Attribute(torch.bucketize(mean, cuts).long(), ["dark", "medium", "bright"])


def available_attributes(ds: Dataset) -> dict[str, Attribute]:
    """The dataset's attributes plus every derived attribute that applies to it."""
    out = dict(ds.attributes)
    for name in DERIVED:
        if name not in out:
            attr = DERIVED.get(name)(ds)
            if attr is not None:
                out[name] = attr
    return out


def dataset_family(dataset: str) -> str:
    """`ton-iot:/path/file.csv` -> `ton-iot`."""
    return dataset.partition(":")[0]


def default_attribute(
    dataset: str, task: str = "class", available: Iterable[str] | None = None
) -> str:
    """The attribute the attribute attack targets by default (see the module docstring)."""
    names = list(available) if available is not None else None
    family = dataset_family(dataset)
    prefs = PREFERENCES.get(family, FALLBACK)
    determined = DETERMINED_BY.get(family, {})
    free = [p for p in prefs if p != task and task not in determined.get(p, set())]
    for name in free + [task]:
        if names is None or name in names:
            return name
    if names:
        return sorted(names)[0]
    raise PrivpartError(
        f"dataset {dataset!r} has no attribute to infer", "give the dataset a class label"
    )


def infer_task(ds: Dataset, attributes: dict[str, Attribute]) -> str:
    """Which attribute is the task label (`Dataset.with_task` swaps labels for one)."""
    for name, attr in attributes.items():
        if attr.values.shape == ds.labels.shape and torch.equal(attr.values, ds.labels):
            return name
    return "class"
