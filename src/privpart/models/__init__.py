"""Model zoo: name -> factory, adapted to channels/classes/resolution; user models too."""

from __future__ import annotations

from privpart.models import zoo as _zoo  # noqa: F401  (fills the registry)
from privpart.models.build import build_model
from privpart.models.normalize import IMAGENET, Normalization, parse_normalization
from privpart.models.registry import ZOO
from privpart.models.spec import ModelSpec, parse_input_shape
from privpart.models.weights import load_pretrained

__all__ = [
    "IMAGENET",
    "ZOO",
    "ModelSpec",
    "Normalization",
    "build_model",
    "load_pretrained",
    "parse_input_shape",
    "parse_normalization",
]
