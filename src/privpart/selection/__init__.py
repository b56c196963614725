"""Cut selection: constraints (leakage limits, memory) and the latency objective; typed verdicts."""

from privpart.selection.constraints import Constraints
from privpart.selection.select import (
    WHOLE_TRUSTED,
    CutEvidence,
    Selection,
    judge,
    judge_cut,
    leakage_score,
    select_cut,
)
from privpart.selection.verdict import (
    Breach,
    Fastest,
    Implied,
    Note,
    OverMemory,
    Reason,
    Slower,
    Status,
    TieLost,
    Verdict,
)

__all__ = [
    "WHOLE_TRUSTED", "Breach", "Constraints", "CutEvidence", "Fastest", "Implied", "Note",
    "OverMemory", "Reason", "Selection", "Slower", "Status", "TieLost", "Verdict", "judge",
    "judge_cut", "leakage_score", "select_cut",
]  # fmt: skip
