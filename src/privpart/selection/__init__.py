"""Cut selection: constraints (leakage thresholds, memory) and the latency objective."""

from privpart.selection.constraints import Constraints
from privpart.selection.select import (
    WHOLE_TRUSTED,
    Breach,
    CutEvidence,
    Selection,
    breaches,
    leakage_score,
    select_cut,
)

__all__ = [
    "WHOLE_TRUSTED",
    "Breach",
    "Constraints",
    "CutEvidence",
    "Selection",
    "breaches",
    "leakage_score",
    "select_cut",
]
