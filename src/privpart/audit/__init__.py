"""Orchestration of the main job: train/load, attack and profile every cut, select, report."""

from privpart.audit.config import DEFAULT_ATTACK_NAMES, AuditConfig
from privpart.audit.cutpick import block_boundary_cuts, resolve_cuts
from privpart.audit.results import AuditResult, CutReport
from privpart.audit.runner import Auditor, validate

__all__ = [
    "DEFAULT_ATTACK_NAMES",
    "AuditConfig",
    "AuditResult",
    "Auditor",
    "CutReport",
    "block_boundary_cuts",
    "resolve_cuts",
    "validate",
]
