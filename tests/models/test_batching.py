"""Inference batches sized from the model's largest activation."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from privpart.data import load_dataset
from privpart.models.batching import LIVE_TENSORS, inference_batch, largest_activation_bytes
from privpart.training.train import evaluate_accuracy


def stem(channels: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(), nn.Flatten())


def test_the_largest_activation_is_measured_per_sample() -> None:
    model = stem(8)
    assert largest_activation_bytes(model, (3, 16, 16)) == 8 * 16 * 16 * 4
    assert model.training  # its mode is given back


def test_a_large_activation_shrinks_the_batch_and_a_small_model_keeps_the_limit() -> None:
    wide = stem(64)  # 64 x 224 x 224 floats: 12.8 MB per sample
    per_sample = LIVE_TENSORS * 64 * 224 * 224 * 4
    assert inference_batch(wide, (3, 224, 224), budget_bytes=10 * per_sample) == 10
    assert inference_batch(wide, (3, 224, 224), budget_bytes=1) == 1  # never below one
    assert inference_batch(stem(4), (3, 8, 8)) == 256  # the usual batch where memory allows


def test_evaluation_gives_the_same_accuracy_whatever_the_batch(idx_dir: Path) -> None:
    torch.manual_seed(0)
    ds = load_dataset("idx:" + str(idx_dir))
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    index = torch.arange(100)
    auto = evaluate_accuracy(model, ds, index, (28, 28))
    assert auto == evaluate_accuracy(model, ds, index, (28, 28), batch=7)
    assert 0.0 <= auto <= 1.0
