"""Features of the aux and victim sets at every requested cut, in ONE forward pass.

A torch.fx Interpreter runs the partition's traced graph once per batch and copies out the value
of each requested cut node. Copies are taken the moment a node runs: a later in-place op
(VGG's `ReLU(inplace=True)`) would otherwise overwrite a recorded conv output. Every attack on a
cut then shares its `FeatureSet`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, fx

from privpart.attacks.attributes import available_attributes, infer_task
from privpart.attacks.base import FeatureSet
from privpart.data import Dataset, DataSplits
from privpart.errors import PrivpartError
from privpart.partition import Cut, Partition
from privpart.ui import progress

MIN_AUX = 4


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
) -> dict[str, FeatureSet]:
    """{cut name: FeatureSet} for `cuts`, model in eval mode, no gradients, one pass."""
    check_disjoint(splits)
    cuts = [partition.cut(c.name) for c in cuts]  # validates each cut against this model
    wanted = {c.node for c in cuts}
    index = torch.cat([splits.aux, splits.victim])
    n_aux = splits.aux.numel()
    gm = partition.graph
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
                collector.run(x)
                inputs.append(x)
                for node in wanted:
                    outs[node].append(collector.seen[node])
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
        )
    return result
