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


def _probe_keys(arch: str) -> tuple[str, str]:
    """(first convolution's weight, classifier's weight) keys of `arch`, from a model built on
    the meta device (no memory): the first 4-D and the last 2-D tensor in its state dict."""
    from privpart.models import ModelSpec, build_model

    with torch.device("meta"):
        probe = build_model(ModelSpec(arch, 3, 1000, (224, 224)))
    state = probe.state_dict()
    convs = [k for k, v in state.items() if v.dim() == 4]
    linears = [k for k, v in state.items() if v.dim() == 2]
    if not convs or not linears:
        raise PrivpartError(
            f"{arch} has no convolution or no linear classifier to read shapes from",
            "give --in-channels/--classes through privpart train instead",
        )
    return convs[0], linears[-1]


def weights_shape(arch: str, path: Path) -> tuple[int, int]:
    """(input channels, classes) of the model whose weights `path` holds: a 1000-class
    torchvision ImageNet file gives (3, 1000)."""
    conv_key, fc_key = _probe_keys(arch)
    state = read_state_dict(path)
    missing = [k for k in (conv_key, fc_key) if k not in state]
    if missing:
        raise PrivpartError(
            f"{path} has no {' or '.join(missing)}: these are not {arch} weights in "
            "torchvision's format",
            f"give the state dict of a torchvision {arch} (model.state_dict())",
        )
    return int(state[conv_key].shape[1]), int(state[fc_key].shape[0])


def check_complete(model: nn.Module, notes: list[str], path: Path) -> None:
    """Refuse weights that left part of `model` untrained (a model audited as it is must be the
    model in the file, classifier included)."""
    from privpart.models.normalize import MODULE_NAME

    loaded = set(read_state_dict(path))
    missing = [k for k in model.state_dict() if k not in loaded and not k.startswith(MODULE_NAME)]
    skipped = [n for n in notes if "skipped" in n and "not in model" not in n]
    if missing or skipped:
        shown = ", ".join((missing + skipped)[:4])
        raise PrivpartError(
            f"{path} does not hold the whole model: {len(missing)} tensors missing, "
            f"{len(skipped)} of another shape ({shown})",
            "import the weights the model was trained with, or fine-tune from them with "
            "`privpart train MODEL --weights FILE`",
        )
