"""Input normalisation as part of the model, so everything outside it stays in image space.

Data, attacks, reconstructions and their scores all work on images in [0, 1]; a model that
expects other statistics (ImageNet's mean/std for torchvision weights) normalises inside its own
forward. The normalisation is recorded in the `ModelSpec` (and so in `meta.json`), its mean and
std are buffers in the checkpoint, and the head of every cut (and so the enclave's measurement)
contains it.

The model keeps its class and its module names: `with_input_normalization` gives the instance a
subclass whose forward normalises first, and one child module `input_normalization`. Partition
treats that module as part of the input: it is traced whole and no cut is offered after it, so
cut names do not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from privpart.errors import PrivpartError, PrivpartValueError

MODULE_NAME = "input_normalization"


@dataclass(frozen=True)
class Normalization:
    """Per-channel `(x - mean) / std` applied to inputs in [0, 1]."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str = "custom"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        return cls(
            tuple(float(v) for v in d["mean"]),
            tuple(float(v) for v in d["std"]),
            str(d.get("name", "custom")),
        )

    def fits(self, channels: int) -> None:
        if len(self.mean) not in (1, channels) or len(self.std) != len(self.mean):
            raise PrivpartError(
                f"normalisation {self.name} has {len(self.mean)} means and {len(self.std)} stds "
                f"for a {channels}-channel model",
                f"give one mean and one std per channel ({channels}), or a single pair",
            )
        if min(self.std) <= 0:
            raise PrivpartError(f"normalisation {self.name}: std must be > 0", "fix the stds")


# torchvision's ImageNet weights expect inputs normalised with these (torchvision.transforms docs).
IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "imagenet")


def parse_normalization(text: str, channels: int, pretrained: bool) -> Normalization | None:
    """`auto`, `none`, `imagenet` or `m1,m2,m3/s1,s2,s3` -> the model's normalisation."""
    key = text.strip().lower()
    if key == "auto":
        return IMAGENET if pretrained and channels == 3 else None
    if key == "none":
        return None
    if key == "imagenet":
        norm = IMAGENET
    else:
        mean_text, sep, std_text = text.partition("/")
        try:
            if not sep:
                raise ValueError(text)
            norm = Normalization(
                tuple(float(v) for v in mean_text.split(",")),
                tuple(float(v) for v in std_text.split(",")),
            )
        except ValueError:
            raise PrivpartValueError(
                f"normalisation {text!r} is not auto, none, imagenet or MEANS/STDS",
                'write e.g. `normalize="0.5,0.5,0.5/0.25,0.25,0.25"`',
                param="normalize",
            ) from None
    norm.fits(channels)
    return norm


class InputNormalization(nn.Module):
    """`(x - mean) / std`, channel by channel."""

    # Partition: trace this module whole and offer no cut after it (it belongs to the input).
    privpart_input_transform: ClassVar[bool] = True

    def __init__(self, norm: Normalization) -> None:
        super().__init__()
        self.name = norm.name
        self.register_buffer("mean", torch.tensor(norm.mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(norm.std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        mean = ", ".join(f"{v:.6g}" for v in self.mean.flatten().tolist())
        std = ", ".join(f"{v:.6g}" for v in self.std.flatten().tolist())
        return f"name={self.name}, mean=({mean}), std=({std})"


class _NormalizedForward:
    """Mixin placed before the model's own class: normalise, then the model's forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(getattr(self, MODULE_NAME)(x))  # type: ignore[misc]

    def __reduce_ex__(self, protocol: Any) -> tuple:  # picklable although the class is made here
        return _rebuild, (type(self).__bases__[1],), self.__getstate__()  # type: ignore[attr-defined]


_CLASSES: dict[type, type] = {}


def _normalized_class(base: type) -> type:
    cls = _CLASSES.get(base)
    if cls is None:
        cls = type(base.__name__, (_NormalizedForward, base), {"__module__": base.__module__})
        cls.__qualname__ = base.__qualname__
        _CLASSES[base] = cls
    return cls


def _rebuild(base: type) -> nn.Module:
    cls = _normalized_class(base)
    return cls.__new__(cls)


def with_input_normalization(model: nn.Module, norm: Normalization | None) -> nn.Module:
    """`model` (the same object) normalising its inputs first; unchanged for `None`."""
    if norm is None:
        return model
    if isinstance(model, _NormalizedForward):
        raise ValueError("the model already normalises its inputs")
    model.add_module(MODULE_NAME, InputNormalization(norm))
    model.__class__ = _normalized_class(type(model))
    return model


def normalization_of(model: nn.Module) -> InputNormalization | None:
    module = getattr(model, MODULE_NAME, None)
    return module if isinstance(module, InputNormalization) else None
