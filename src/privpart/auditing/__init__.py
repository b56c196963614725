"""Orchestration of the main job: train/load, attack and profile every cut, select."""

from privpart.auditing.config import AuditConfig
from privpart.auditing.cutpick import block_boundary_cuts, resolve_cuts
from privpart.auditing.results import AuditResult, CutReport
from privpart.auditing.runner import Auditor
from privpart.auditing.validate import validate

__all__ = [
    "AuditConfig",
    "AuditResult",
    "Auditor",
    "CutReport",
    "block_boundary_cuts",
    "resolve_cuts",
    "validate",
]
