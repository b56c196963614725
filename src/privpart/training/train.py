"""Target-model training: the model whose cuts privpart audits (trained here: no downloads)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from privpart.data import Dataset, DataSplits
from privpart.ui import console, progress


@dataclass
class TrainConfig:
    epochs: int = 1
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 5e-4
    seed: int = 0


@dataclass
class TrainReport:
    test_accuracy: float
    train_seconds: float
    samples_seen: int
    final_loss: float


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module, ds: Dataset, index: torch.Tensor, size: tuple[int, int], batch: int = 256
) -> float:
    model.eval()
    correct = 0
    for i in range(0, index.numel(), batch):
        idx = index[i : i + batch]
        correct += int((model(ds.inputs(idx, size)).argmax(1) == ds.labels[idx]).sum())
    return correct / max(index.numel(), 1)


def train_target(
    model: nn.Module,
    ds: Dataset,
    splits: DataSplits,
    input_size: tuple[int, int],
    cfg: TrainConfig,
    show_progress: bool = True,
) -> TrainReport:
    """Adam + one-cycle schedule: converges in one or two epochs on CPU budgets."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(splits.target_train.numel() // cfg.batch_size, 1)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.15
    )
    start = time.perf_counter()
    seen, loss_value = 0, float("nan")
    with progress(disable=not show_progress) as bar:
        task = bar.add_task("training", total=cfg.epochs * steps_per_epoch, info="")
        for epoch in range(cfg.epochs):
            model.train()
            order = splits.target_train[torch.randperm(splits.target_train.numel(), generator=g)]
            for step in range(steps_per_epoch):
                idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                loss = F.cross_entropy(model(ds.inputs(idx, input_size)), ds.labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                seen += idx.numel()
                loss_value = 0.9 * loss_value + 0.1 * loss.item() if step else loss.item()
                bar.update(task, advance=1, info=f"epoch {epoch + 1} loss {loss_value:.3f}")
    seconds = time.perf_counter() - start
    acc = evaluate_accuracy(model, ds, splits.target_test, input_size)
    if show_progress:
        console.print(f"test accuracy {acc:.2%} after {seconds / 60:.1f} min ({seen} samples)")
    return TrainReport(acc, seconds, seen, loss_value)
