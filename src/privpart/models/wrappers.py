"""Inference-time modules a defended checkpoint carries, rebuilt when it loads.

A defence that changes inference (the `noise` defence adds calibrated Gaussian noise at the cut)
records its wrapper's name and settings in meta.json; loading a checkpoint rebuilds the wrapper
from that record (`restore_inference`) before the weights are loaded, without importing the
defences package or unpickling anything.

The noise belongs to the head: the deployed model wraps the module at the cut in
`NoisyOutput(inner, CutNoise)`, so `Partition(model, shape).cut(<cut>)` still exists and its
head ends with the noise (the pre-noise value becomes the cut `<cut>.inner`). The `bottleneck`
defence wraps it in `Bottleneck(inner, encode, [pool,] norm, noise, decode)`: the cut that
crosses to the untrusted side is then `<cut>.noise` (a few noisy channels), and `<cut>` itself
is the decoded value, a deterministic function of that noisy code.

`CutNoise` is a leaf of the traced graph (`privpart_leaf`), so its forward runs as written at
every call: in audits and training it draws from torch's RNG (seeded, reproducible figures);
`secure_noise(module)` switches it to the operating system's CSPRNG, as the runtime does for
every head it serves, so no one who knows a seed can predict or subtract the noise.
`CutNoise.sigma` is a buffer, so noise can be switched off after tracing."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from privpart.registry import Registry

WRAPPERS: Registry[Callable[[nn.Module, dict[str, Any]], nn.Module]] = Registry(
    "inference wrapper"
)


def secure_normal(like: Tensor) -> Tensor:
    """Standard normal draws shaped like `like`, from the OS CSPRNG (`os.urandom`), by the
    Box-Muller transform on 32-bit uniforms (tails exact to 6.6 sigma)."""
    n = like.numel()
    pairs = (n + 1) // 2
    raw = np.frombuffer(os.urandom(8 * pairs), dtype=np.uint32).astype(np.float64)
    u1 = (raw[:pairs] + 1.0) / 2.0**32  # (0, 1]: log is finite
    u2 = raw[pairs:] / 2.0**32
    r = np.sqrt(-2.0 * np.log(u1))
    z = np.concatenate([r * np.cos(2 * math.pi * u2), r * np.sin(2 * math.pi * u2)])[:n]
    return torch.from_numpy(z).to(dtype=like.dtype, device=like.device).reshape(like.shape)


class CutNoise(nn.Module):
    """x + sigma * scale * N(0, 1); `scale` (per channel) and `sigma` are buffers.

    A leaf of the traced graph: the draw happens in this forward at every call, from torch's
    RNG or, once `secure` is set (`secure_noise`), from the OS CSPRNG; `extra_repr` shows which,
    so a head's measurement covers the noise source too."""

    privpart_leaf = True

    def __init__(self, scale: Tensor, sigma: float) -> None:
        super().__init__()
        self.register_buffer("scale", scale.float())
        self.register_buffer("sigma", torch.tensor(float(sigma)))
        self.secure = False

    def forward(self, x: Tensor) -> Tensor:
        draw = secure_normal(x) if self.secure else torch.randn_like(x)
        return x + draw * self.scale * self.sigma

    def extra_repr(self) -> str:
        return f"source={'os-csprng' if self.secure else 'torch-rng'}"


class RmsNorm(nn.Module):
    """Each sample scaled to unit root-mean-square over all its values (no parameters): the
    head cannot outgrow fixed noise by scaling its code, so `sigma` is the noise-to-signal
    ratio of every sample. A leaf of the traced graph (its reduction depends on the rank)."""

    privpart_leaf = True

    def forward(self, z: Tensor) -> Tensor:
        dims = tuple(range(1, z.dim()))
        return z * torch.rsqrt(z.pow(2).mean(dims, keepdim=True) + 1e-12)


class Bottleneck(nn.Module):
    """inner -> encode (a few channels) [-> average-pool to pool x pool] -> RmsNorm -> noise
    -> decode (back to inner's width) [-> nearest-upsample back to inner's H x W].

    The head ends at `noise` (cut `<name>.noise`): what crosses is the noisy low-dimensional
    code; `decode` is the tail's first layer. Pooling (`size` = inner's H x W, given when
    `pool` > 0) shrinks the code spatially as well: a 1 x 1 code keeps no layout of the input
    at all, only what the task needs from its pooled content."""

    def __init__(
        self,
        inner: nn.Module,
        encode: nn.Module,
        noise: CutNoise,
        decode: nn.Module,
        pool: int = 0,
        size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.encode = encode
        self.pool = nn.AdaptiveAvgPool2d(pool) if pool else nn.Identity()
        self.norm = RmsNorm()
        self.noise = noise
        self.decode = decode
        self.unpool = nn.Upsample(size=tuple(size), mode="nearest") if pool and size else (
            nn.Identity()
        )  # fmt: skip

    def forward(self, *args: Tensor) -> Tensor:
        code = self.noise(self.norm(self.pool(self.encode(self.inner(*args)))))
        return self.unpool(self.decode(code))


def bottleneck_layers(
    feature_shape: tuple[int, ...], channels: int
) -> tuple[nn.Module, nn.Module]:
    """(encode, decode): 1x1 convolutions for C x H x W maps, linear maps for vectors."""
    width = feature_shape[0]
    if len(feature_shape) == 3:
        return nn.Conv2d(width, channels, 1), nn.Conv2d(channels, width, 1)
    return nn.Linear(width, channels), nn.Linear(channels, width)


def code_shape(feature_shape: tuple[int, ...], channels: int, pool: int) -> tuple[int, ...]:
    """Shape of the bottleneck's code: `channels` maps at the cut's H x W, or pool x pool."""
    if pool and len(feature_shape) == 3:
        return (channels, pool, pool)
    return (channels, *feature_shape[1:])


def make_bottleneck(
    inner: nn.Module,
    feature_shape: tuple[int, ...],
    channels: int,
    pool: int,
    sigma: float,
) -> Bottleneck:
    """A bottleneck for a cut of `feature_shape`: fresh encode/decode and noise at `sigma`."""
    encode, decode = bottleneck_layers(feature_shape, channels)
    noise = CutNoise(torch.ones(scale_shape(code_shape(feature_shape, channels, pool))), sigma)
    spatial = len(feature_shape) == 3 and pool > 0
    size = tuple(feature_shape[1:]) if spatial else None
    return Bottleneck(inner, encode, noise, decode, pool if spatial else 0, size)


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


def replace_at(model: nn.Module, path: str, make: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """Replace the module at `path` with `make(module)`, in place."""
    parent_path, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, child, make(parent.get_submodule(child)))
    return model


def wrap_at(model: nn.Module, path: str, noise: CutNoise) -> nn.Module:
    """Replace the module at `path` with NoisyOutput(module, noise), in place."""
    return replace_at(model, path, lambda inner: NoisyOutput(inner, noise))


def noise_modules(model: nn.Module) -> list[CutNoise]:
    return [m for m in model.modules() if isinstance(m, CutNoise)]


def secure_noise(model: nn.Module) -> nn.Module:
    """Every cut noise in `model` draws from the OS CSPRNG from now on (the runtime's heads)."""
    for m in noise_modules(model):
        m.secure = True
    return model


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


@WRAPPERS.register("cut-bottleneck")
def restore_bottleneck(model: nn.Module, record: dict[str, Any]) -> nn.Module:
    """The recorded bottleneck at `record["cut"]` (its weights come with the checkpoint)."""
    shape = tuple(record["feature_shape"])
    k, pool = int(record["params"]["channels"]), int(record["params"].get("pool", 0))
    return replace_at(
        model, record["cut"], lambda inner: make_bottleneck(inner, shape, k, pool, record["sigma"])
    )


def restore_inference(model: nn.Module, record: dict[str, Any] | None) -> nn.Module:
    """Re-apply a defended checkpoint's inference-time wrapper (if its record names one)."""
    name = (record or {}).get("wrapper")
    return model if name is None else WRAPPERS.get(name)(model, record or {})
