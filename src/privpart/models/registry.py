"""Name -> factory(ModelSpec) registry of the model zoo."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from privpart.models.spec import ModelSpec
from privpart.registry import Registry

ZOO: Registry[Callable[[ModelSpec], nn.Module]] = Registry("model")
