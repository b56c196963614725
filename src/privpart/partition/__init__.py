"""Cut enumeration on the torch.fx graph and exact head/tail splitting."""

from __future__ import annotations

from collections.abc import Iterable

from torch import fx, nn

from privpart.errors import PrivpartError
from privpart.partition.cuts import Cut, enumerate_cuts
from privpart.partition.split import Split, split_graph
from privpart.partition.tracer import trace


class Partition:
    """A model traced once, its legal cuts, and splits at any of them."""

    def __init__(
        self, model: nn.Module, input_shape: tuple[int, ...], leaf_modules: Iterable[str] = ()
    ) -> None:
        self.model = model
        self.input_shape = tuple(input_shape)
        self.graph: fx.GraphModule = trace(model, leaf_modules)
        self.cuts: list[Cut] = enumerate_cuts(self.graph, self.input_shape)

    @property
    def interior_cuts(self) -> list[Cut]:
        return [c for c in self.cuts if c.position == "interior"]

    def cut(self, name: str) -> Cut:
        for c in self.cuts:
            if c.name == name:
                return c
        names = [c.name for c in self.cuts]
        shown = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
        raise PrivpartError(
            f"{name!r} is not a legal cut of {type(self.model).__name__}",
            f"legal cuts: {shown} (see `privpart cuts`)",
        )

    def split(self, cut: Cut | str) -> Split:
        return split_graph(self.graph, self.cut(cut) if isinstance(cut, str) else cut)


def split(model: nn.Module, cut: str, input_shape: tuple[int, ...]) -> Split:
    """`split(model, "layer2", (3, 224, 224))` -> Split(head, tail, cut).

    In eval mode `tail(head(x))` is bit-identical to `model(x)`.
    """
    return Partition(model, input_shape).split(cut)


__all__ = ["Cut", "Partition", "Split", "enumerate_cuts", "split", "trace"]
