"""Legal cut points of a traced model, with what each costs on either side.

A cut after node *n* is legal when, at that point of execution order, *n* is the only value still
needed later: one tensor then carries all state from head to tail. Inside a residual block the
block's input is still live (it is added back at the end), so no cut is ever offered there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from math import prod

import torch
from torch import fx, nn
from torch.utils.flop_counter import FlopCounterMode

from privpart.errors import PrivpartError
from privpart.partition.tracer import is_input_transform


@dataclass(frozen=True)
class Cut:
    """One legal cut: the head ends at node `node`, whose output crosses to the tail."""

    name: str
    index: int
    node: str
    shape: tuple[int, ...]
    bytes_per_sample: int
    head_params: int
    tail_params: int
    head_flops: int
    tail_flops: int
    position: str  # "input" (head is the identity), "interior", or "output" (tail is the identity)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Cut:
        return cls(**{**d, "shape": tuple(d["shape"])})


def _live_nodes(nodes: list[fx.Node]) -> list[set[fx.Node]]:
    """For each position, the values produced so far that are still used afterwards."""
    order = {n: i for i, n in enumerate(nodes)}
    last_use = {n: max((order[u] for u in n.users), default=order[n]) for n in nodes}
    live: set[fx.Node] = set()
    result = []
    for i, n in enumerate(nodes):
        if n.op != "get_attr":  # parameters/buffers are weights, rebuilt on either side
            live.add(n)
        live = {m for m in live if last_use[m] > i}
        result.append(set(live))
    return result


def _inside(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _cut_name(node: fx.Node, nodes: list[fx.Node]) -> str:
    """The outermost module whose scope ends at `node` (`layer2`, `features.16`), else its path."""
    if node.op == "placeholder":
        return "input"
    module = node.meta.get("privpart_module", "")
    idx = nodes.index(node)
    later = nodes[idx + 1 :]
    parts = module.split(".") if module else []
    for depth in range(1, len(parts) + 1):
        prefix = ".".join(parts[:depth])
        if not any(_inside(n.meta.get("privpart_module", ""), prefix) for n in later):
            return prefix
    return node.meta.get("privpart_qualname", node.name)


class _Recorder(fx.Interpreter):
    """Runs the graph once, recording each node's output shape and cumulative FLOPs."""

    def __init__(self, gm: fx.GraphModule, counter: FlopCounterMode) -> None:
        super().__init__(gm)
        self.counter = counter
        self.shapes: dict[fx.Node, tuple[int, ...] | None] = {}
        self.dtypes: dict[fx.Node, torch.dtype] = {}
        self.flops: dict[fx.Node, int] = {}

    def run_node(self, n: fx.Node):  # noqa: ANN201
        out = super().run_node(n)
        self.shapes[n] = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else None
        if isinstance(out, torch.Tensor):
            self.dtypes[n] = out.dtype
        self.flops[n] = int(self.counter.get_total_flops())
        return out


def _node_params(gm: fx.GraphModule, n: fx.Node) -> list[nn.Parameter]:
    if n.op == "call_module":
        return list(gm.get_submodule(n.target).parameters())
    if n.op == "get_attr":
        obj = gm
        for part in str(n.target).split("."):
            obj = getattr(obj, part)
        return [obj] if isinstance(obj, nn.Parameter) else []
    return []


def _count(params: dict[int, nn.Parameter]) -> int:
    return sum(p.numel() for p in params.values())


def enumerate_cuts(gm: fx.GraphModule, input_shape: tuple[int, ...]) -> list[Cut]:
    """All legal cuts of a traced model in execution order, from `input` to the last layer."""
    nodes = [n for n in gm.graph.nodes if n.op != "output"]
    was_training = gm.training
    gm.eval()
    counter = FlopCounterMode(display=False)
    recorder = _Recorder(gm, counter)
    try:
        with torch.no_grad(), counter:
            recorder.run(torch.rand(1, *input_shape, generator=torch.Generator().manual_seed(0)))
    except Exception as exc:
        raise PrivpartError(
            f"a forward pass with input shape {tuple(input_shape)} failed: {exc}",
            "check --input matches what the model expects (CxHxW)",
        ) from exc
    finally:
        gm.train(was_training)
    total_flops = int(counter.get_total_flops())

    prefix: list[int] = []
    seen: dict[int, nn.Parameter] = {}
    for n in nodes:
        seen.update({id(p): p for p in _node_params(gm, n)})
        prefix.append(_count(seen))
    suffix = [0] * len(nodes)
    seen = {}
    for i in range(len(nodes) - 1, -1, -1):
        suffix[i] = _count(seen)  # parameters strictly after position i
        seen.update({id(p): p for p in _node_params(gm, nodes[i])})

    live = _live_nodes(list(gm.graph.nodes))
    cuts: list[Cut] = []
    last = len(nodes) - 1
    for i, n in enumerate(nodes):
        shape = recorder.shapes.get(n)
        if n.op == "get_attr" or live[i] != {n} or shape is None:
            continue
        if n.op == "call_module" and is_input_transform(gm.get_submodule(str(n.target))):
            continue  # the model's input normalisation: part of `input`, not a cut of its own
        dtype = recorder.dtypes[n]
        elem = torch.empty((), dtype=dtype).element_size()
        position = "input" if n.op == "placeholder" else "output" if i == last else "interior"
        cuts.append(
            Cut(
                name=_cut_name(n, nodes),
                index=i,
                node=n.name,
                shape=shape,
                bytes_per_sample=prod(shape) * elem,
                head_params=prefix[i],
                tail_params=suffix[i],
                head_flops=recorder.flops[n],
                tail_flops=total_flops - recorder.flops[n],
                position=position,
            )
        )
    return cuts
