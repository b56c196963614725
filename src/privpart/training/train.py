"""Target-model training: the model whose cuts privpart audits (trained here: no downloads)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import update_bn

from privpart.data import Dataset, DataSplits
from privpart.data.loading import chunks
from privpart.device import (
    AUTO,
    PRECISIONS,
    Precision,
    auto_precision,
    cpu_native_bf16,
    describe,
    deterministic,
    resolve_device,
)
from privpart.device import check_precision as check_device_precision
from privpart.device import resolve_precision as resolve_device_precision
from privpart.models.batching import inference_batch
from privpart.ui import console, progress

# Training precisions: the autocast dtype of forward/backward (weights and optimiser state stay
# fp32). On the CPU bf16 runs convolutions on oneDNN's bf16 kernels in channels-last layout;
# "auto" picks bf16 where the CPU does bf16 natively (AMX or AVX512-BF16): VGG-16 steps ~1.2x
# faster there (bench/results/train_step.md) to the same accuracy (train.md); fp32 elsewhere,
# where bf16 would be emulated and slower. On CUDA "auto" is bf16 (fp16 + loss scaling on GPUs
# without bf16). See privpart.device.
CLOCK_STEPS = 10_000  # resolution of the one-cycle schedule when it follows the clock
# Batch-norm statistics are recomputed after training over this many training batches: the
# running averages lag the weights (torchvision's EfficientNet/MobileNet use momentum 0.01,
# ~100 steps of memory), so a short schedule would evaluate with statistics of earlier weights.
BN_BATCHES = 50

__all__ = ["PRECISIONS", "TrainConfig", "TrainReport", "evaluate_accuracy", "train_target"]


@dataclass
class TrainConfig:
    epochs: int = 1
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 5e-4
    seed: int = 0
    precision: str = AUTO
    minutes: float | None = None  # a wall-clock budget instead of a number of epochs
    device: str = AUTO
    bn_batches: int = BN_BATCHES  # 0: keep the running statistics training left


@dataclass
class TrainReport:
    test_accuracy: float
    train_seconds: float
    samples_seen: int
    final_loss: float
    final_lr: float  # the schedule's last learning rate: near zero when it ran its whole course
    train_accuracy: float  # of the training-mode predictions over the last ~10 batches
    bn_samples: int  # training samples the batch-norm statistics were recomputed over (0: none)


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module,
    ds: Dataset,
    index: torch.Tensor,
    size: tuple[int, int],
    batch: int | None = None,
    device: torch.device | str | None = None,
) -> float:
    """Top-1 accuracy of `model` (eval mode, moved to `device`; default: where its parameters
    are) on the samples `index`, streamed in batches (default size: as many samples as bound
    the activations' memory, `privpart.models.batching`)."""
    first = next(model.parameters(), None)
    device = resolve_device(device or (first.device if first is not None else "cpu"))
    model.to(device).eval()
    batch = batch or inference_batch(model, (ds.channels, *size))
    correct = torch.zeros((), dtype=torch.long, device=device)
    for x, idx in ds.loader(chunks(index, batch), size, device):
        correct += (model(x).argmax(1) == ds.labels[idx].to(device)).sum()
    return int(correct) / max(index.numel(), 1)


def make_adamw(params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with the fused kernel where torch has one for these tensors.

    The per-tensor (foreach) step over VGG-16's 15M parameters costs ~55 ms per batch on 2 CPU
    cores; the fused step does the same arithmetic in one pass (~14 ms, bench/train_step.py).
    """
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (AMX tiles or AVX512-BF16)."""
    return cpu_native_bf16()


def resolve_precision(precision: str, device: torch.device | None = None) -> str:
    """`auto` -> the precision `device` (default CPU) trains fastest in; names pass through."""
    if precision == AUTO:
        return auto_precision(device or torch.device("cpu"))
    return precision


def check_precision(precision: str, device: torch.device | None = None) -> torch.dtype | None:
    return check_device_precision(precision, device or torch.device("cpu"))


def precision_setup(
    model: nn.Module, dtype: torch.dtype | None, device: torch.device | None = None
) -> tuple[torch.memory_format, torch.autocast]:
    """Lay `model` out for `dtype` (mixed precision: channels-last) and the autocast context its
    steps use. Returns the memory format the inputs must take too."""
    device = device or torch.device("cpu")
    name = next((k for k, v in PRECISIONS.items() if v == dtype), "fp32")
    prec = Precision(name, device, dtype)
    model.to(memory_format=prec.layout)
    return prec.layout, prec.autocast()


class EpochBatches:
    """Full batches of a fresh seeded shuffle of `pool` each time it is iterated (one epoch);
    the sampler of the training loader, so worker processes persist across epochs."""

    def __init__(self, pool: torch.Tensor, batch: int, g: torch.Generator) -> None:
        self.pool, self.batch, self.g = pool, batch, g
        self.steps = max(pool.numel() // batch, 1)

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = self.pool[torch.randperm(self.pool.numel(), generator=self.g)]
        for step in range(self.steps):
            yield order[step * self.batch : (step + 1) * self.batch]

    def __len__(self) -> int:
        return self.steps


def has_batch_norm(model: nn.Module) -> bool:
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        for m in model.modules()
    )


def recalibrate_batch_norm(
    model: nn.Module,
    ds: Dataset,
    pool: torch.Tensor,
    size: tuple[int, int],
    batch: int,
    batches: int,
    seed: int,
    device: torch.device,
) -> int:
    """Recompute every batch-norm layer's running statistics over `batches` training batches
    with the final weights (`torch.optim.swa_utils.update_bn`: an equal-weight average). Returns
    the samples used (0 when the model has no batch norm)."""
    if batches <= 0 or not has_batch_norm(model):
        return 0
    g = torch.Generator().manual_seed(seed + 1)
    order = pool[torch.randperm(pool.numel(), generator=g)][: batches * batch]
    with torch.no_grad():
        update_bn(ds.loader(chunks(order, batch), size, device), model)
    return int(order.numel())


def train_target(
    model: nn.Module,
    ds: Dataset,
    splits: DataSplits,
    input_size: tuple[int, int],
    cfg: TrainConfig,
    show_progress: bool = True,
) -> TrainReport:
    """AdamW + one-cycle schedule: converges in one or two epochs on CPU budgets.

    With `cfg.minutes` the schedule follows the clock instead of the step count: training runs
    whole or partial epochs until the budget is spent and always ends annealed, so a slower
    (or busier) machine sees fewer images rather than overrunning. Afterwards the batch-norm
    statistics are recomputed with the final weights (`cfg.bn_batches`). `cfg.precision` and
    `cfg.device` are resolved in place (`auto` becomes what ran), so the saved config says it.
    The model is left on the device, in eval mode.
    """
    device = resolve_device(cfg.device)
    cfg.device = str(device)
    prec = resolve_device_precision(cfg.precision, device)
    cfg.precision = prec.name
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    model.to(device=device, memory_format=prec.layout)
    opt = make_adamw(list(model.parameters()), cfg.lr, cfg.weight_decay)
    scaler = prec.grad_scaler()
    n_train = splits.target_train.numel()
    sampler = EpochBatches(splits.target_train, cfg.batch_size, g)
    budget = cfg.minutes * 60 if cfg.minutes else None
    total = CLOCK_STEPS if budget else cfg.epochs * sampler.steps
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=total, pct_start=0.15
    )
    loader = ds.loader(sampler, input_size, device)
    start = time.perf_counter()
    seen, loss_value, epoch = 0, float("nan"), 0
    recent: list[tuple[torch.Tensor, int]] = []  # (correct, n) of the last batches
    model.train()
    with deterministic(device), progress(disable=not show_progress) as bar:
        what = f"training ({cfg.minutes:g} min budget)" if budget else "training"
        task = bar.add_task(what, total=budget or total, info="")
        while (budget is None and epoch < cfg.epochs) or (
            budget is not None and time.perf_counter() - start < budget
        ):
            for x, idx in loader:
                if budget and time.perf_counter() - start >= budget:
                    break
                x = x.contiguous(memory_format=prec.layout)
                y = ds.labels[idx].to(device, non_blocking=True)
                with prec.autocast():
                    logits = model(x)
                    loss = F.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                if budget:  # the schedule's position is the fraction of the budget spent
                    spent = (time.perf_counter() - start) / budget
                    while sched.last_epoch < min(int(spent * total), total - 1):
                        sched.step()
                else:
                    sched.step()
                hits = (logits.detach().argmax(1) == y).sum()
                recent = [*recent[-9:], (hits, idx.numel())]
                loss_value = 0.9 * loss_value + 0.1 * loss.item() if seen else loss.item()
                seen += idx.numel()
                done = time.perf_counter() - start if budget else sched.last_epoch
                bar.update(task, completed=done, info=f"epoch {epoch + 1} loss {loss_value:.3f}")
            epoch += 1
    seconds = time.perf_counter() - start
    model.to(memory_format=torch.contiguous_format)
    train_acc = sum(int(c) for c, _ in recent) / max(sum(n for _, n in recent), 1)
    bn_samples = recalibrate_batch_norm(
        model, ds, splits.target_train, input_size, cfg.batch_size, cfg.bn_batches, cfg.seed,
        device,
    )  # fmt: skip
    acc = evaluate_accuracy(model, ds, splits.target_test, input_size, device=device)
    if show_progress:
        bn = f", batch-norm statistics over {bn_samples} samples" if bn_samples else ""
        console.print(
            f"test accuracy {acc:.2%} (training batches {train_acc:.2%}) after "
            f"{seconds / 60:.1f} min ({seen} samples = {seen / n_train:.2f} epochs, "
            f"{cfg.precision} on {describe(device)}{bn})"
        )
    return TrainReport(
        acc, seconds, seen, loss_value, opt.param_groups[0]["lr"], train_acc, bn_samples
    )
