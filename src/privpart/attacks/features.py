"""Features of the aux and victim sets at every requested cut, in ONE forward pass.

A torch.fx Interpreter runs the partition's traced graph once per batch (on the chosen device)
and copies out the value of each requested cut node. Copies are taken the moment a node runs: a
later in-place op (VGG's `ReLU(inplace=True)`) would otherwise overwrite a recorded conv output.
Every attack on a cut then shares its `FeatureSet`, through the view its threat model grants
(`view.py`); the FeatureSet itself, which holds the victims' inputs, is the scorer's alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn

from privpart.attacks.attributes import available_attributes, infer_task
from privpart.data import Dataset, DataSplits
from privpart.errors import PrivpartError
from privpart.partition import Cut, Partition
from privpart.ui import progress

MIN_AUX = 4


@dataclass
class FeatureSet:
    """Features at ONE cut, computed once and shared by every attack on that cut.

    It holds the victims' inputs and labels (for scoring): attacks never receive it, only the
    `AttackerView` their threat model grants (`FeatureSet.view`).
    """

    cut: Cut
    head: nn.Module
    aux_inputs: Tensor
    aux_features: Tensor
    victim_inputs: Tensor
    victim_features: Tensor
    aux_attributes: dict[str, Tensor]
    victim_attributes: dict[str, Tensor]
    attribute_classes: dict[str, list[str]]
    kind: str = "image"
    feature_names: list[str] | None = None
    native_size: tuple[int, int] | None = None
    aux_index: Tensor | None = None  # dataset indices, for provenance and overlap checks
    victim_index: Tensor | None = None
    dataset: str = ""
    task: str = "class"
    device: torch.device = torch.device("cpu")  # where the head runs and attacks compute

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.aux_inputs.shape[1:])

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.aux_features.shape[1:])

    def sizes(self) -> dict[str, int]:
        return {"aux": int(self.aux_inputs.shape[0]), "victim": int(self.victim_inputs.shape[0])}


class _Collector(fx.Interpreter):
    """Runs the graph, keeping a private copy of the output of each wanted node."""

    def __init__(self, gm: fx.GraphModule, wanted: set[str]) -> None:
        super().__init__(gm)
        self.wanted = wanted
        self.seen: dict[str, Tensor] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n.name in self.wanted:
            self.seen[n.name] = out.detach().clone()
        return out


def check_disjoint(splits: DataSplits) -> None:
    """Victims must never be part of the attacker's auxiliary data."""
    shared = set(splits.aux.tolist()) & set(splits.victim.tolist())
    if shared:
        raise PrivpartError(
            f"{len(shared)} samples are in both the aux and the victim split",
            "build splits with privpart.data.make_splits (its splits are disjoint)",
        )
    if splits.aux.numel() < MIN_AUX or splits.victim.numel() < 1:
        raise PrivpartError(
            f"attacks need >= {MIN_AUX} aux and >= 1 victim samples, got "
            f"{splits.aux.numel()} and {splits.victim.numel()}",
            "use more data or larger aux/victim splits",
        )


def compute_feature_sets(
    partition: Partition,
    ds: Dataset,
    splits: DataSplits,
    cuts: list[Cut],
    input_size: tuple[int, int],
    batch_size: int = 256,
    show_progress: bool = True,
    task: str | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, FeatureSet]:
    """{cut name: FeatureSet} for `cuts`, model in eval mode, no gradients, one pass.

    The graph runs on `device` (the model's parameters move there); features and inputs are
    kept on the CPU, where the attacks' batches are drawn from.
    """
    device = torch.device(device)
    check_disjoint(splits)
    cuts = [partition.cut(c.name) for c in cuts]  # validates each cut against this model
    wanted = {c.node for c in cuts}
    index = torch.cat([splits.aux, splits.victim])
    n_aux = splits.aux.numel()
    gm = partition.graph.to(device)
    was_training = gm.training
    gm.eval()
    inputs: list[Tensor] = []
    outs: dict[str, list[Tensor]] = {node: [] for node in wanted}
    try:
        with torch.no_grad(), progress(transient=True, disable=not show_progress) as bar:
            task_id = bar.add_task("features", total=index.numel(),
                                   info=f"{len(cuts)} cuts")  # fmt: skip
            for i in range(0, index.numel(), batch_size):
                x = ds.inputs(index[i : i + batch_size], input_size)
                collector = _Collector(gm, wanted)
                collector.run(x.to(device, non_blocking=True))
                inputs.append(x)
                for node in wanted:
                    outs[node].append(collector.seen[node].cpu())
                bar.update(task_id, advance=x.shape[0])
    finally:
        gm.train(was_training)
    all_inputs = torch.cat(inputs)
    attrs = available_attributes(ds)
    task = task or infer_task(ds, attrs)
    result: dict[str, FeatureSet] = {}
    for cut in cuts:
        feats = torch.cat(outs[cut.node])
        head = partition.split(cut).head.eval()
        result[cut.name] = FeatureSet(
            cut=cut,
            head=head,
            aux_inputs=all_inputs[:n_aux],
            aux_features=feats[:n_aux],
            victim_inputs=all_inputs[n_aux:],
            victim_features=feats[n_aux:],
            aux_attributes={k: a.values[splits.aux] for k, a in attrs.items()},
            victim_attributes={k: a.values[splits.victim] for k, a in attrs.items()},
            attribute_classes={k: list(a.classes) for k, a in attrs.items()},
            kind=ds.kind,
            feature_names=list(ds.feature_names) if ds.feature_names else None,
            native_size=ds.native_size,
            aux_index=splits.aux.clone(),
            victim_index=splits.victim.clone(),
            dataset=ds.name,
            task=task,
            device=device,
        )
    return result
