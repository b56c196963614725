"""privpart: find where to cut a neural network for private split inference, and run the split.

    import privpart
    result = privpart.audit(model, dataset, input_shape=(1, 32, 32))
    result.selected_cut, result.verdicts["features.16"].reasons
    result.leakage("features.16", "decoder").ssim
    privpart.cuts(model, (1, 32, 32))
    privpart.attack(model, dataset, cut="features.16", attack="decoder")

The names below load on first use (`privpart.api`), so `import privpart.runtime...` in the
enclave worker stays lean. docs/api.md describes the surface.
"""

from __future__ import annotations

import importlib
from typing import Any

from privpart.version import __version__

_LAZY = {
    "audit": "privpart.api",
    "attack": "privpart.api",
    "cuts": "privpart.api",
    "as_dataset": "privpart.api",
    "target_of": "privpart.api",
    "AuditResult": "privpart.auditing",
    "AuditConfig": "privpart.auditing",
    "TargetOptions": "privpart.auditing.config",
    "AttackOptions": "privpart.auditing.config",
    "SearchOptions": "privpart.auditing.config",
    "DefenceOptions": "privpart.auditing.config",
    "ExecutionOptions": "privpart.auditing.config",
    "AttackResult": "privpart.attacks",
    "Budget": "privpart.attacks",
    "Cut": "privpart.partition",
    "Constraints": "privpart.selection",
    "Verdict": "privpart.selection",
    "Status": "privpart.selection",
    "ProfileConfig": "privpart.profiling",
    "Target": "privpart.training.target",
    "PrivpartError": "privpart.errors",
    "PrivpartValueError": "privpart.errors",
    "PrivpartTypeError": "privpart.errors",
    "PrivpartFileNotFoundError": "privpart.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'privpart' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later look-ups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
