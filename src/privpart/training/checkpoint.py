"""Checkpoints: `model.safetensors` + `meta.json`. Loading rebuilds the architecture from the spec
and loads tensors strictly; nothing is ever unpickled."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from privpart.errors import PrivpartError, PrivpartFileNotFoundError
from privpart.models import ModelSpec, build_model
from privpart.models.user import refuse_user_code
from privpart.models.wrappers import restore_inference

WEIGHTS = "model.safetensors"
META = "meta.json"


def save_checkpoint(out: Path, model: nn.Module, spec: ModelSpec, meta: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS))
    full = {"spec": spec.to_dict(), **meta, "weights_sha256": file_sha256(out / WEIGHTS)}
    (out / META).write_text(json.dumps(full, indent=2, sort_keys=True))
    return out


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_meta(ckpt: Path) -> dict[str, Any]:
    meta_path = ckpt / META
    if not meta_path.is_file():
        raise PrivpartFileNotFoundError(
            f"{ckpt} is not a privpart checkpoint (no {META})",
            "give the folder a checkpoint was saved to, or create one with "
            "privpart.training.train_to_checkpoint (the `privpart train` command)",
        )
    try:
        meta = json.loads(meta_path.read_text())
        ModelSpec.from_dict(meta["spec"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise PrivpartError(f"{meta_path} is corrupt: {exc}", "re-create the checkpoint") from exc
    return meta


def load_checkpoint(
    ckpt: Path, expect_arch: str | None = None, trust_code: bool = False
) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, meta). `expect_arch` guards against a checkpoint of another model.

    The one place a checkpoint becomes a model: an architecture that is a user's Python file is
    refused unless `trust_code` (`refuse_user_code`), before the file is imported."""
    meta = read_meta(ckpt)
    spec = ModelSpec.from_dict(meta["spec"])
    if expect_arch is not None and spec.arch != expect_arch:
        raise PrivpartError(
            f"{ckpt} holds a {spec.arch} checkpoint, not {expect_arch}",
            f"pass a {expect_arch} checkpoint, or audit {spec.arch}",
        )
    refuse_user_code(spec, trust_code, f"checkpoint {ckpt}")
    # a defended model: re-apply its inference-time wrapper (cut noise) before the weights
    model = restore_inference(build_model(spec), meta.get("defence"))
    try:
        state = load_file(str(ckpt / WEIGHTS))
    except (OSError, SafetensorError) as exc:
        raise PrivpartError(
            f"cannot read {ckpt / WEIGHTS}: {exc}", "the weights file is corrupt: re-train"
        ) from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise PrivpartError(
            f"{ckpt / WEIGHTS} does not fit architecture {spec.arch}: {' '.join(first)}",
            "the weights and meta.json disagree: re-create the checkpoint",
        ) from exc
    return model.eval(), meta


def checkpoint_spec(ckpt: Path) -> ModelSpec:
    return ModelSpec.from_dict(read_meta(ckpt)["spec"])
