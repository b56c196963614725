"""Private attributes the attribute-inference attack can target, and the default per dataset.

An attribute is a per-sample label. Two sources:
- the dataset's own attributes (`Dataset.attributes`): Fashion-MNIST `class` (10 garments) and
  `group` (tops / bottoms / footwear / bags); TON_IoT `class` (attack type), `proto`
  (tcp/udp/icmp...) and `service` (http, dns, ssl...); per-image attributes of an image folder
  (`--attributes FILE`) or of a torch dataset; any other dataset `class`;
- derived attributes, functions of the input registered below (`@DERIVED.register`):
  `brightness` for image datasets, the mean-intensity tercile (dark / medium / bright). Its
  thresholds are the terciles over the whole dataset when the dataset is in memory; for a
  dataset streamed from disk (an image folder), over the attacker's aux split, computed from
  the aux and victim images the audit decodes anyway (nothing else is ever decoded).

Default (`default_attribute`): the first entry of the dataset's preference list that is neither
the model's task label nor a function of it, since the server learns the task label from the
output anyway (the audit also reads every attribute score against that *task-label floor*):
- fashion-mnist: `group` (the kind of item a user holds) for models whose task is not `class`;
  `class` for a `group`-task model; `brightness` (a property of the input, not of its label) for
  a `class`-task model, whose label determines the group.
- ton-iot: `service`, then `proto` (the application a flow belongs to, not its attack label).
- anything else: the dataset's own attributes other than the task (an attributes file's
  columns, in order), else the task label itself, which the audit then skips with the reason.
`--attribute NAME` overrides the default (derived attributes are used only when named).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from privpart.data import Attribute, Dataset, DataSplits
from privpart.errors import PrivpartError
from privpart.registry import Registry

PREFERENCES: dict[str, list[str]] = {
    "fashion-mnist": ["group", "class", "brightness"],
    "ton-iot": ["service", "proto", "class"],
}
# attribute -> the tasks that determine it (the server reads it off the prediction)
DETERMINED_BY: dict[str, dict[str, set[str]]] = {"fashion-mnist": {"group": {"class"}}}
FALLBACK = ["class"]
TERCILES = torch.tensor([1 / 3, 2 / 3])
CHUNK = 4096  # images averaged at a time (in-memory datasets: no float copy of them all)


@dataclass(frozen=True)
class Derived:
    """A derived attribute: a per-image statistic of inputs in [0, 1], cut into terciles."""

    statistic: Callable[[Tensor], Tensor]
    classes: list[str]


DERIVED: Registry[Derived] = Registry("derived attribute")
DERIVED.register("brightness")(
    Derived(lambda x: x.float().flatten(1).mean(1), ["dark", "medium", "bright"])
)


def _terciles(stat: Tensor, reference: Tensor, classes: list[str]) -> Attribute:
    cuts = torch.quantile(reference.float(), TERCILES)
    return Attribute(torch.bucketize(stat, cuts).long(), list(classes))


def derived_names(ds: Dataset) -> list[str]:
    """Derived attributes that apply to `ds` (images) and that it does not define itself."""
    return [n for n in DERIVED if ds.kind == "image" and n not in ds.attributes]


def _whole(ds: Dataset, name: str) -> Attribute:
    """A derived attribute over an in-memory dataset (thresholds over all of it)."""
    data = ds.store.data  # type: ignore[attr-defined]  (TensorStore)
    scale = 255.0 if data.dtype == torch.uint8 else 1.0
    rule = DERIVED.get(name)
    stat = torch.cat([rule.statistic(data[i : i + CHUNK]) for i in range(0, len(ds), CHUNK)])
    stat = stat / scale
    return _terciles(stat, stat, rule.classes)


def available_attributes(ds: Dataset) -> dict[str, Attribute]:
    """The dataset's attributes, plus (for datasets held in memory) every derived attribute
    over the whole dataset; a streamed dataset's derived attributes exist only for the splits
    an audit decodes (`split_attributes`)."""
    out = dict(ds.attributes)
    if not ds.streamed:
        for name in derived_names(ds):
            out[name] = _whole(ds, name)
    return out


def attribute_names(ds: Dataset) -> list[str]:
    """Every attribute an attack on `ds` could target (own and derived)."""
    return [*ds.attributes, *(n for n in derived_names(ds) if n not in ds.attributes)]


def split_attributes(
    ds: Dataset, splits: DataSplits, aux_inputs: Tensor, victim_inputs: Tensor
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, list[str]]]:
    """(aux values, victim values, class names) of every attribute, for the aux and victim
    splits whose decoded inputs are given (see the module docstring for derived attributes)."""
    attrs = available_attributes(ds)
    aux = {k: a.values[splits.aux] for k, a in attrs.items()}
    victim = {k: a.values[splits.victim] for k, a in attrs.items()}
    classes = {k: list(a.classes) for k, a in attrs.items()}
    for name in derived_names(ds):
        if name in attrs:
            continue
        rule = DERIVED.get(name)
        a_stat, v_stat = rule.statistic(aux_inputs), rule.statistic(victim_inputs)
        aux[name] = _terciles(a_stat, a_stat, rule.classes).values
        victim[name] = _terciles(v_stat, a_stat, rule.classes).values
        classes[name] = list(rule.classes)
    return aux, victim, classes


def dataset_family(dataset: str) -> str:
    """`ton-iot:/path/file.csv` -> `ton-iot`."""
    return dataset.partition(":")[0]


def default_attribute(
    dataset: str, task: str = "class", available: Iterable[str] | None = None
) -> str:
    """The attribute the attribute attack targets by default (see the module docstring)."""
    names = list(available) if available is not None else None
    family = dataset_family(dataset)
    prefs = PREFERENCES.get(family)
    if prefs is None:  # the dataset's own attributes first (an attributes file's columns)
        own = [n for n in (names or []) if n not in DERIVED and n not in ("class", task)]
        prefs = own + FALLBACK
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
