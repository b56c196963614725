"""Peak memory of a head: its weights plus the largest set of activations alive at once.

Computed from the traced graph (shape propagation + liveness) for one batch, so it is exact for
the tensors the head holds and independent of allocator noise; it excludes the runtime itself
(Python, torch), which an enclave's EPC must also hold: keep a margin.
"""

from __future__ import annotations

import torch
from torch import fx
from torch.fx.passes.shape_prop import ShapeProp


def _bytes(meta: object) -> int:
    tm = getattr(meta, "shape", None)
    if tm is None:
        return 0
    return int(torch.Size(meta.shape).numel()) * torch.empty((), dtype=meta.dtype).element_size()


def peak_memory_bytes(head: fx.GraphModule, example: torch.Tensor) -> dict[str, int]:
    """{"weights": ..., "activations": peak live activation bytes, "total": ...} for `example`."""
    weights = sum(t.numel() * t.element_size() for t in head.parameters())
    weights += sum(t.numel() * t.element_size() for t in head.buffers())
    with torch.no_grad():
        ShapeProp(head).propagate(example)
    nodes = list(head.graph.nodes)
    order = {n: i for i, n in enumerate(nodes)}
    last_use = {n: max((order[u] for u in n.users), default=order[n]) for n in nodes}
    live: dict[fx.Node, int] = {}
    peak = 0
    for i, n in enumerate(nodes):
        if n.op not in ("get_attr", "output"):
            live[n] = _bytes(n.meta.get("tensor_meta"))
        peak = max(peak, sum(live.values()))
        live = {m: b for m, b in live.items() if last_use[m] > i}
    return {"weights": int(weights), "activations": int(peak), "total": int(weights + peak)}
