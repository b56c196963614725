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

from privpart.attacks.attribute_choice import infer_task, split_attributes
from privpart.data import Dataset, DataSplits
from privpart.data.loading import chunks
from privpart.device import resolve_device
from privpart.errors import PrivpartError
from privpart.models.batching import inference_batch
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
    batch_size: int | None = None,
    show_progress: bool = True,
    task: str | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, FeatureSet]:
    """{cut name: FeatureSet} for `cuts`, model in eval mode, no gradients, one pass of the
    graph up to the deepest of them.

    Inputs stream from the dataset (decoded by worker processes for image folders) in batches
    and the graph runs on `device` (the model's parameters move there, in fp32: features are
    what the deployed head computes); features and inputs are kept on the CPU, where the
    attacks' batches are drawn from, in tensors allocated once (no copy of them all). Batches
    hold `batch_size` samples (default: as many as bound the activations' memory,
    `privpart.models.batching`).
    """
    device = resolve_device(device)
    check_disjoint(splits)
    cuts = [partition.cut(c.name) for c in cuts]  # validates each cut against this model
    wanted = {c.node for c in cuts}
    index = torch.cat([splits.aux, splits.victim])
    n, n_aux = index.numel(), splits.aux.numel()
    # run the graph only as far as the deepest cut wanted (its head keeps the node names)
    gm = partition.split(max(cuts, key=lambda c: c.index)).head.to(device)
    was_training = gm.training
    gm.eval()
    batch_size = batch_size or inference_batch(gm, (ds.channels, *input_size))
    all_inputs = torch.empty(n, ds.channels, *input_size)
    outs: dict[str, Tensor] = {}
    try:
        with torch.no_grad(), progress(transient=True, disable=not show_progress) as bar:
            task_id = bar.add_task("features", total=n, info=f"{len(cuts)} cuts")
            at = 0
            for x, idx in ds.loader(chunks(index, batch_size), input_size, device):
                collector = _Collector(gm, wanted)
                collector.run(x)
                k = idx.numel()
                all_inputs[at : at + k].copy_(x, non_blocking=False)
                for node in wanted:
                    feat = collector.seen[node]
                    if node not in outs:
                        outs[node] = torch.empty(n, *feat.shape[1:], dtype=feat.dtype)
                    outs[node][at : at + k].copy_(feat)
                at += k
                bar.update(task_id, advance=k)
    finally:
        gm.train(was_training)
    aux_inputs, victim_inputs = all_inputs[:n_aux], all_inputs[n_aux:]
    aux_attrs, victim_attrs, classes = split_attributes(ds, splits, aux_inputs, victim_inputs)
    task = task or infer_task(ds, ds.attributes)
    result: dict[str, FeatureSet] = {}
    for cut in cuts:
        feats = outs[cut.node]
        head = partition.split(cut).head.eval()
        result[cut.name] = FeatureSet(
            cut=cut,
            head=head,
            aux_inputs=aux_inputs,
            aux_features=feats[:n_aux],
            victim_inputs=victim_inputs,
            victim_features=feats[n_aux:],
            aux_attributes=aux_attrs,
            victim_attributes=victim_attrs,
            attribute_classes=classes,
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


def feature_bytes(cuts: list[Cut], splits: DataSplits) -> int:
    """What `compute_feature_sets` keeps for `cuts` (fp32 features of aux + victims)."""
    n = splits.aux.numel() + splits.victim.numel()
    return n * sum(c.bytes_per_sample for c in cuts)
