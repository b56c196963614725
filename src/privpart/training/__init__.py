"""Target-model training and safetensors checkpoints."""

from privpart.training.checkpoint import (
    checkpoint_spec,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from privpart.training.pipeline import DEFAULT_LR, train_to_checkpoint
from privpart.training.target import Target
from privpart.training.train import TrainConfig, TrainReport, evaluate_accuracy, train_target

__all__ = [
    "DEFAULT_LR",
    "Target",
    "TrainConfig",
    "TrainReport",
    "checkpoint_spec",
    "evaluate_accuracy",
    "load_checkpoint",
    "read_meta",
    "save_checkpoint",
    "train_target",
    "train_to_checkpoint",
]
