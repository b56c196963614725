"""A weights file as the model it holds: its input channels and classes, read from the file,
and a check that it fills the whole model (`privpart import`: a model audited as it is)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from privpart.errors import PrivpartError, PrivpartValueError
from privpart.models.build import build_model
from privpart.models.normalize import MODULE_NAME
from privpart.models.spec import ModelSpec
from privpart.models.weights import read_state_dict


def _probe_keys(arch: str) -> tuple[str, str]:
    """(first convolution's weight, classifier's weight) keys of `arch`, from a model built on
    the meta device (no memory): the first 4-D and the last 2-D tensor in its state dict."""
    with torch.device("meta"):
        probe = build_model(ModelSpec(arch, 3, 1000, (224, 224)))
    state = probe.state_dict()
    convs = [k for k, v in state.items() if v.dim() == 4]
    linears = [k for k, v in state.items() if v.dim() == 2]
    if not convs or not linears:
        raise PrivpartValueError(
            f"{arch} has no convolution or no linear classifier to read shapes from, so its "
            "weights cannot be imported as they are",
            "train it instead (privpart.training.train_to_checkpoint sizes the model from the "
            "dataset)",
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
    loaded = set(read_state_dict(path))
    missing = [k for k in model.state_dict() if k not in loaded and not k.startswith(MODULE_NAME)]
    skipped = [n for n in notes if "skipped" in n and "not in model" not in n]
    if missing or skipped:
        shown = ", ".join((missing + skipped)[:4])
        raise PrivpartValueError(
            f"{path} does not hold the whole model: {len(missing)} tensors missing, "
            f"{len(skipped)} of another shape ({shown})",
            "import the weights the model was trained with, or train from these `weights` "
            "(training fits the classifier to the dataset)",
            param="weights",
        )
