"""User models given as `path/to/file.py:factory`."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

from torch import nn

from privpart.errors import PrivpartError, PrivpartValueError
from privpart.models.spec import ModelSpec


def is_user_arch(arch: str) -> bool:
    return ":" in arch and arch.split(":", 1)[0].endswith(".py")


def refuse_user_code(spec: ModelSpec, trust_code: bool, where: str = "the checkpoint") -> None:
    """Refuse to build an architecture that is a user's Python file unless the caller said so.

    A zoo architecture is data (a name and weights); `path/to/file.py:factory` imports and runs
    that file in this process, so a checkpoint from someone else would be code from someone else.
    Every load of a checkpoint (CLI commands, the library, the enclave worker) goes through here
    before anything is imported."""
    if not is_user_arch(spec.arch) or trust_code:
        return
    path_text, _, factory = spec.arch.rpartition(":")
    path = Path(path_text).expanduser().absolute()
    raise PrivpartValueError(
        f"{where} names its architecture as Python code ({spec.arch}): loading it would import "
        f"and run {path} and call its {factory}(), so it is refused",
        f"read {path}; if you trust it, pass `trust_code=True`; a checkpoint of a zoo model "
        "(vgg16, resnet50, ...) needs no trust",
        param="trust_code",
    )


def load_user_model(spec: ModelSpec) -> nn.Module:
    """Import the file and call the factory (with `in_channels`/`num_classes` if it takes them)."""
    path_text, _, factory_name = spec.arch.rpartition(":")
    path = Path(path_text)
    if not path.is_file():
        raise PrivpartError(
            f"user model file {path} does not exist",
            "give the model as path/to/file.py:factory_function",
        )
    module_name = f"privpart_user_{abs(hash(str(path.resolve())))}"
    mod_spec = importlib.util.spec_from_file_location(module_name, path)
    assert mod_spec is not None and mod_spec.loader is not None
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[module_name] = module
    try:
        mod_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: report any failure with its location
        raise PrivpartError(
            f"importing {path} failed: {type(exc).__name__}: {exc}", "fix the model file"
        ) from exc
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise PrivpartError(
            f"{path} has no callable {factory_name!r}",
            f"define def {factory_name}(in_channels=1, num_classes=10) -> nn.Module in {path}",
        )
    params = inspect.signature(factory).parameters
    kwargs = {
        k: v
        for k, v in (("in_channels", spec.in_channels), ("num_classes", spec.num_classes))
        if k in params
    }
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise PrivpartError(
            f"{spec.arch} returned {type(model).__name__}, not a torch.nn.Module",
            "make the factory return the model",
        )
    return model
