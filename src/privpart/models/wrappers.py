"""Inference-time modules a defended checkpoint carries, rebuilt when it loads.

A defence that changes inference (the `noise` defence adds calibrated Gaussian noise at the
cut) records its wrapper's name and settings in meta.json; loading a checkpoint rebuilds the
wrapper from that record (`restore_inference`) before the weights are loaded, without importing
the defences package or unpickling anything.

The noise belongs to the head: the deployed model wraps the module at the cut in
`NoisyOutput(inner, CutNoise)`, so `Partition(model, shape).cut(<cut>)` still exists and its
head ends with the noise (the pre-noise value becomes the cut `<cut>.inner`). The noise reads
the global torch RNG; `CutNoise.sigma` is a buffer, so noise can be switched off after tracing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from privpart.registry import Registry

WRAPPERS: Registry[Callable[[nn.Module, dict[str, Any]], nn.Module]] = Registry(
    "inference wrapper"
)


class CutNoise(nn.Module):
    """x + sigma * scale * N(0, 1); `scale` (per channel) and `sigma` are buffers."""

    def __init__(self, scale: Tensor, sigma: float) -> None:
        super().__init__()
        self.register_buffer("scale", scale.float())
        self.register_buffer("sigma", torch.tensor(float(sigma)))

    def forward(self, x: Tensor) -> Tensor:
        # Each buffer meets a traced value directly, so tracing reads the buffers (get_attr)
        # instead of baking sigma * scale into a constant: set_noise still acts after a split.
        return x + torch.randn_like(x) * self.scale * self.sigma


class NoisyOutput(nn.Module):
    """A module whose output gets `noise`: keeps the module's name, so the cut keeps its name."""

    def __init__(self, inner: nn.Module, noise: CutNoise) -> None:
        super().__init__()
        self.inner = inner
        self.noise = noise

    def forward(self, *args: Tensor) -> Tensor:
        return self.noise(self.inner(*args))


def scale_shape(feature_shape: tuple[int, ...]) -> tuple[int, ...]:
    """(1, C, 1, 1) for C x H x W maps, (1, D) for vectors: one scale per channel."""
    return (1, feature_shape[0], *([1] * (len(feature_shape) - 1)))


def wrap_at(model: nn.Module, path: str, noise: CutNoise) -> nn.Module:
    """Replace the module at `path` with NoisyOutput(module, noise), in place."""
    parent_path, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, child, NoisyOutput(parent.get_submodule(child), noise))
    return model


def noise_modules(model: nn.Module) -> list[CutNoise]:
    return [m for m in model.modules() if isinstance(m, CutNoise)]


def set_noise(model: nn.Module, sigma: float) -> None:
    """Set every cut noise's sigma (0 switches noise off, e.g. to compare with the clean model)."""
    for m in noise_modules(model):
        m.sigma.fill_(float(sigma))


@WRAPPERS.register("cut-noise")
def restore_cut_noise(model: nn.Module, record: dict[str, Any]) -> nn.Module:
    """Noise at `record["cut"]` with the recorded sigma (the scale buffer comes with the
    weights)."""
    shape = scale_shape(tuple(record["feature_shape"]))
    return wrap_at(model, record["cut"], CutNoise(torch.ones(shape), record["params"]["sigma"]))


def restore_inference(model: nn.Module, record: dict[str, Any] | None) -> nn.Module:
    """Re-apply a defended checkpoint's inference-time wrapper (if its record names one)."""
    name = (record or {}).get("wrapper")
    return model if name is None else WRAPPERS.get(name)(model, record or {})
