"""Defences that make an earlier cut safe: fine-tune the model so the features at the cut keep
what the task needs and lose what reveals the input or a private attribute.

    path = defend(Path("runs/target"), "adversarial", "features.9", Path("runs/defended"),
                  {"alpha": 1.0, "beta": 1.0, "private_attribute": "class"})

`adversarial` (privacy-partitioning min-max), `nopeek` (distance correlation), `noise`
(calibrated Gaussian noise at the cut, also at inference), `bottleneck` (a learned few-channel
code plus noise inside the head, trained end to end); one file each, a registry, a
contract (base.py). A defended checkpoint is only ever judged by a fresh audit: attackers
trained from scratch against its frozen head (`privpart audit --defence METHOD`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from privpart.defences import adversarial as _adversarial  # noqa: F401  (fill the registry)
from privpart.defences import bottleneck as _bottleneck  # noqa: F401
from privpart.defences import noise as _noise  # noqa: F401
from privpart.defences import nopeek as _nopeek  # noqa: F401
from privpart.defences.base import COMMON, Defence, DefenceContext
from privpart.defences.registry import DEFENCES
from privpart.params import Param


def make_defence(method: str, **params: Any) -> Defence:
    """A new defence with validated parameters: unknown methods and bad values fail here."""
    return DEFENCES.get(method)(**params)


def defend(
    base_ckpt: Path,
    method: str,
    cut: str,
    out_dir: Path,
    params: dict[str, Any] | None = None,
    data_dir: Path | None = None,
    show_progress: bool = True,
    device: str = "cpu",
    trust_code: bool = False,
) -> Path:
    """Fine-tune `base_ckpt` with defence `method` at `cut` on `device`; the defended
    checkpoint's folder. A checkpoint whose architecture is a Python file runs that file only
    with `trust_code`."""
    defence = make_defence(method, **(params or {}))
    return defence.train(
        Path(base_ckpt), cut, Path(out_dir), data_dir, show_progress, device, trust_code
    )


__all__ = [
    "COMMON", "DEFENCES", "Defence", "DefenceContext", "Param", "defend", "make_defence",
]  # fmt: skip
