"""Training ends with batch-norm statistics that match the trained weights."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from privpart.data import load_dataset, make_splits
from privpart.training import TrainConfig, check_target, evaluate_accuracy, train_target
from privpart.training.train import recalibrate_batch_norm


def slow_bn_model(in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    """Batch norm with torchvision MobileNet/EfficientNet's slow running average (momentum
    0.01) and a saturating activation: after a short schedule the running statistics are far
    from the batches', and eval mode falls to chance (the issue's MobileNetV3 case, small)."""

    def block(i: int, o: int) -> nn.Module:
        conv = nn.Conv2d(i, o, 3, padding=1, bias=False)
        return nn.Sequential(conv, nn.BatchNorm2d(o, momentum=0.01), nn.Sigmoid(), nn.MaxPool2d(2))

    blocks = [block(in_channels, 8), block(8, 16), block(16, 16)]
    head = [nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, num_classes)]
    return nn.Sequential(*blocks, *head)


def test_briefly_trained_bn_model_evaluates_at_its_training_accuracy(idx_dir: Path) -> None:
    ds = load_dataset(f"idx:{idx_dir}")
    splits = make_splits(ds, seed=0, n_aux=100, n_victim=32)
    torch.manual_seed(0)
    model = slow_bn_model()
    cfg = TrainConfig(epochs=4, batch_size=16, lr=1e-2, precision="fp32", device="cpu",
                      bn_batches=0)  # fmt: skip
    report = train_target(model, ds, splits, (32, 32), cfg, show_progress=False)
    assert report.train_accuracy > 0.6 and report.bn_samples == 0  # it learned ...
    stale = evaluate_accuracy(model, ds, splits.target_test, (32, 32))
    assert check_target(stale, ds.labels[splits.target_test]).weak  # ... but evaluates at chance
    used = recalibrate_batch_norm(
        model, ds, splits.target_train, (32, 32), 16, 8, 0, torch.device("cpu")
    )
    assert used == 8 * 16
    fresh = evaluate_accuracy(model, ds, splits.target_test, (32, 32))
    assert fresh > report.train_accuracy - 0.15 and fresh > stale + 0.4


def test_models_without_batch_norm_are_left_alone(tiny_checkpoint: Path) -> None:
    from privpart.training import read_meta

    meta = read_meta(tiny_checkpoint)  # tinycnn: no batch norm
    assert meta["bn_recalibration_samples"] == 0 and meta["train_config"]["bn_batches"] > 0
    assert meta["trained"] is True and not meta["target_check"]["weak"]
