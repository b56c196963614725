"""Target-model training and import, safetensors checkpoints, and the check that a target is
worth auditing."""

from privpart.training.checkpoint import (
    checkpoint_spec,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from privpart.training.pipeline import DEFAULT_LR, import_to_checkpoint, train_to_checkpoint
from privpart.training.quality import TargetCheck, check_target, require_useful
from privpart.training.target import Target
from privpart.training.train import TrainConfig, TrainReport, evaluate_accuracy, train_target

__all__ = [
    "DEFAULT_LR",
    "Target",
    "TargetCheck",
    "TrainConfig",
    "TrainReport",
    "check_target",
    "checkpoint_spec",
    "evaluate_accuracy",
    "import_to_checkpoint",
    "load_checkpoint",
    "read_meta",
    "require_useful",
    "save_checkpoint",
    "train_target",
    "train_to_checkpoint",
]
