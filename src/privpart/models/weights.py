"""Load torchvision-format pretrained weights from a local file, adapting what the zoo adapted.

Accepted: `.safetensors`, or `.pth`/`.pt` read with `torch.load(weights_only=True)` (torch's
restricted loader: plain tensors only, no arbitrary code). Nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from privpart.errors import PrivpartError


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise PrivpartError(f"weights file {path} does not exist", "give a local weights file")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PrivpartError(
            f"cannot read weights from {path}: {exc}",
            "use a .safetensors file or a torchvision .pth state dict",
        ) from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PrivpartError(f"{path} does not hold a state dict", "save model.state_dict()")
    return state


def load_pretrained(model: nn.Module, path: Path) -> list[str]:
    """Copy matching tensors into `model`; return the keys that were adapted or skipped.

    A first convolution trained on RGB is averaged over its input channels when the model takes
    fewer channels; tensors whose shapes still differ (the re-sized classifier) are skipped.
    """
    source = read_state_dict(path)
    target = model.state_dict()
    notes: list[str] = []
    loaded = {}
    for key, tensor in source.items():
        if key not in target:
            notes.append(f"{key}: not in model, skipped")
            continue
        want = target[key].shape
        if tensor.shape == want:
            loaded[key] = tensor
        elif tensor.dim() == 4 and tensor.shape[0] == want[0] and tensor.shape[2:] == want[2:]:
            loaded[key] = tensor.mean(dim=1, keepdim=True).repeat(1, want[1], 1, 1)
            notes.append(f"{key}: averaged {tensor.shape[1]} input channels to {want[1]}")
        else:
            notes.append(f"{key}: shape {tuple(tensor.shape)} != {tuple(want)}, skipped")
    if not loaded:
        raise PrivpartError(
            f"no tensor in {path} matches the model", "check the file is for this architecture"
        )
    model.load_state_dict(loaded, strict=False)
    return notes
