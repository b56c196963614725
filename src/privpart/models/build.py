"""Build the model a spec names: zoo or user architecture, local weights, input normalisation."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from privpart.models import zoo as _zoo  # noqa: F401  (fills the registry)
from privpart.models.normalize import with_input_normalization
from privpart.models.registry import ZOO
from privpart.models.spec import ModelSpec
from privpart.models.user import is_user_arch, load_user_model
from privpart.models.weights import load_pretrained


def build_model(spec: ModelSpec, weights: Path | None = None) -> nn.Module:
    """Build (and optionally load local pretrained weights into) the model a spec names; with
    `spec.normalization` the model normalises its [0, 1] inputs itself."""
    model = load_user_model(spec) if is_user_arch(spec.arch) else ZOO.get(spec.arch)(spec)
    if weights is not None:
        load_pretrained(model, weights)
    return with_input_normalization(model, spec.normalization)
