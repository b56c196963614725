"""Split a traced model at a cut into two GraphModules: head (up to the cut) and tail (the rest).

Both halves copy the original graph's nodes, so `tail(head(x))` runs exactly the operations of
`model(x)` in the same order and is bit-identical to it. They reference (not copy) the model's
submodules: training the halves trains the model. Deep-copy the model first for independent halves.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import fx

from privpart.partition.cuts import Cut


@dataclass
class Split:
    head: fx.GraphModule
    tail: fx.GraphModule
    cut: Cut


def _head_graph(gm: fx.GraphModule, cut_node: str) -> fx.Graph:
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in gm.graph.nodes:
        env[node] = graph.node_copy(node, lambda n: env[n])
        if node.name == cut_node:
            graph.output(env[node])
            return graph
    raise KeyError(cut_node)


def _tail_graph(gm: fx.GraphModule, cut_node: str) -> fx.Graph:
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    nodes = list(gm.graph.nodes)
    idx = next(i for i, n in enumerate(nodes) if n.name == cut_node)

    def lookup(n: fx.Node) -> fx.Node:
        if n not in env:  # a parameter/buffer the head also read: the tail reads it itself
            assert n.op == "get_attr", f"value {n.name} crosses the cut"
            env[n] = graph.node_copy(n, lookup)
        return env[n]

    env[nodes[idx]] = graph.placeholder("features")
    for node in nodes[idx + 1 :]:
        env[node] = graph.node_copy(node, lookup)
    return graph


def split_graph(gm: fx.GraphModule, cut: Cut) -> Split:
    """Head and tail modules for `cut` of the traced model `gm`."""
    head = fx.GraphModule(gm, _head_graph(gm, cut.node), f"Head_{cut.name}")
    tail = fx.GraphModule(gm, _tail_graph(gm, cut.node), f"Tail_{cut.name}")
    head.train(gm.training)
    tail.train(gm.training)
    return Split(head=head, tail=tail, cut=cut)

