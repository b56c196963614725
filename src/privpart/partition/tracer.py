"""Trace a model into a torch.fx graph whose nodes know which module produced them.

Built on torchvision's `NodePathTracer` (the tracer behind its feature extractor); privpart adds
the module path of every node, the failing module when tracing breaks, and leaf modules by name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torchvision
from torch import fx, nn
from torchvision.models.feature_extraction import NodePathTracer

from privpart.errors import PrivpartError

# Modules kept whole: their forward branches on `self.training`, which tracing would freeze.
DEFAULT_LEAVES: tuple[type[nn.Module], ...] = (torchvision.ops.StochasticDepth,)


class _Tracer(NodePathTracer):
    def __init__(self, leaf_names: Iterable[str] = ()) -> None:
        super().__init__(
            leaf_modules=list(DEFAULT_LEAVES), autowrap_modules=(math, torchvision.ops)
        )
        self.leaf_names = set(leaf_names)
        self.failing_module: str | None = None

    def is_leaf_module(self, m: nn.Module, module_qualname: str) -> bool:
        if type(m).__name__ in self.leaf_names or module_qualname in self.leaf_names:
            return True
        if is_input_transform(m) or getattr(m, "privpart_leaf", False):
            return True  # e.g. a defence's noise: its draw must run at every call, as written
        return super().is_leaf_module(m, module_qualname)

    def call_module(self, m, forward, args, kwargs):  # noqa: ANN001 (fx signature)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failing_module is None:
                self.failing_module = self.path_of_module(m) or "<top level>"
            raise

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, *rest):  # noqa: ANN001
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, *rest)
        module = target if kind == "call_module" else self.current_module_qualname
        proxy.node.meta["privpart_module"] = module
        proxy.node.meta["privpart_qualname"] = self.node_to_qualname[proxy.node]
        return proxy


def is_input_transform(m: nn.Module) -> bool:
    """A module that belongs to the input (the model's own normalisation): one graph node, and
    no cut after it (`privpart.models.normalize`)."""
    return bool(getattr(m, "privpart_input_transform", False))


def trace(model: nn.Module, leaf_modules: Iterable[str] = ()) -> fx.GraphModule:
    """Symbolically trace `model`; an untraceable model gets an error naming the module."""
    tracer = _Tracer(leaf_modules)
    try:
        graph = tracer.trace(model)
    except Exception as exc:
        where = tracer.failing_module or "<top level forward>"
        kind = ""
        if where not in ("<top level>", "<top level forward>"):
            kind = f" ({type(model.get_submodule(where)).__name__})"
        raise PrivpartError(
            f"cannot trace {type(model).__name__}: module {where!r}{kind} failed: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0]}",
            f"keep that module whole with --leaf {where} (no cut inside it), or remove "
            "data-dependent control flow from its forward()",
        ) from exc
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise PrivpartError(
            f"{type(model).__name__}.forward takes {len(placeholders)} inputs",
            "privpart splits models with exactly one tensor input; wrap the model",
        )
    placeholders[0].meta["privpart_module"] = ""
    placeholders[0].meta["privpart_qualname"] = "input"
    return fx.GraphModule(tracer.root, graph, type(model).__name__)

