"""One device choice for models, features, attacks and defences: `auto`, `cpu`, `cuda[:N]`."""

from __future__ import annotations

import torch

from privpart.errors import PrivpartError


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """`auto` -> the first CUDA device if there is one, else the CPU; `cuda[:N]` must exist."""
    if isinstance(spec, torch.device):
        return spec
    text = str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise PrivpartError(
            f"unknown device {spec!r}", "use --device auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PrivpartError(
                f"--device {spec} asks for CUDA, but torch sees no CUDA device here",
                "use --device cpu (or auto), or run on a machine with an NVIDIA GPU",
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PrivpartError(
                f"--device {spec}: there are {torch.cuda.device_count()} CUDA devices",
                f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}",
            )
    elif device.type != "cpu":
        raise PrivpartError(f"unsupported device {spec!r}", "use --device auto, cpu or cuda[:N]")
    return device
