"""Target-model training: the model whose cuts privpart audits (trained here: no downloads)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from privpart.data import Dataset, DataSplits
from privpart.errors import PrivpartError
from privpart.ui import console, progress

# Training precisions: the autocast dtype of forward/backward (weights and optimiser stay fp32).
# bf16 runs convolutions on oneDNN's bf16 kernels in channels-last layout; the checkpoint is fp32
# either way. "auto" picks bf16 where the CPU does bf16 natively (AMX or AVX512-BF16): VGG-16
# steps ~1.2x faster there (bench/results/train_step.md) to the same accuracy (train.md);
# fp32 elsewhere, where bf16 would be emulated and slower.
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}
AUTO = "auto"
CLOCK_STEPS = 10_000  # resolution of the one-cycle schedule when it follows the clock


@dataclass
class TrainConfig:
    epochs: int = 1
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 5e-4
    seed: int = 0
    precision: str = AUTO
    minutes: float | None = None  # a wall-clock budget instead of a number of epochs


@dataclass
class TrainReport:
    test_accuracy: float
    train_seconds: float
    samples_seen: int
    final_loss: float
    final_lr: float  # the schedule's last learning rate: near zero when it ran its whole course


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
    cpu = torch.cpu
    return any(
        getattr(cpu, probe, lambda: False)()
        for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    )


def resolve_precision(precision: str) -> str:
    """`auto` -> the precision this machine trains fastest in; other names pass through."""
    if precision == AUTO:
        return "bf16" if native_bf16() else "fp32"
    return precision


def check_precision(precision: str) -> torch.dtype | None:
    if precision not in PRECISIONS:
        raise PrivpartError(
            f"unknown training precision {precision!r}",
            f"choose one of {AUTO}, {', '.join(PRECISIONS)}",
        )
    dtype = PRECISIONS[precision]
    if dtype is torch.bfloat16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        raise PrivpartError(
            "this CPU has no bf16 support for oneDNN (needs AVX512-BF16/AMX or AVX512)",
            "train with --precision fp32",
        )
    return dtype


def precision_setup(
    model: nn.Module, dtype: torch.dtype | None
) -> tuple[torch.memory_format, torch.autocast]:
    """Lay `model` out for `dtype` (bf16: channels-last) and the autocast context its steps use.

    Returns the memory format the inputs must take too.
    """
    layout = torch.channels_last if dtype is not None else torch.contiguous_format
    model.to(memory_format=layout)
    return layout, torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def _batches(
    pool: torch.Tensor, batch: int, epochs: int | None, g: torch.Generator
) -> Iterator[tuple[int, torch.Tensor]]:
    """(epoch, sample indices) of full batches, reshuffled each epoch; endless if epochs is None."""
    steps = max(pool.numel() // batch, 1)
    epoch = 0
    while epochs is None or epoch < epochs:
        order = pool[torch.randperm(pool.numel(), generator=g)]
        for step in range(steps):
            yield epoch, order[step * batch : (step + 1) * batch]
        epoch += 1


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
    (or busier) machine sees fewer images rather than overrunning. `cfg.precision` is resolved
    in place (`auto` becomes what ran), so the saved config says it.
    """
    cfg.precision = resolve_precision(cfg.precision)
    dtype = check_precision(cfg.precision)
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    layout, autocast = precision_setup(model, dtype)
    opt = make_adamw(list(model.parameters()), cfg.lr, cfg.weight_decay)
    n_train = splits.target_train.numel()
    steps_per_epoch = max(n_train // cfg.batch_size, 1)
    budget = cfg.minutes * 60 if cfg.minutes else None
    total = CLOCK_STEPS if budget else cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=total, pct_start=0.15
    )
    start = time.perf_counter()
    seen, loss_value = 0, float("nan")
    model.train()
    batches = _batches(splits.target_train, cfg.batch_size, None if budget else cfg.epochs, g)
    with progress(disable=not show_progress) as bar:
        what = f"training ({cfg.minutes:g} min budget)" if budget else "training"
        task = bar.add_task(what, total=budget or total, info="")
        for epoch, idx in batches:
            if budget and time.perf_counter() - start >= budget:
                break
            x = ds.inputs(idx, input_size).contiguous(memory_format=layout)
            with autocast:
                loss = F.cross_entropy(model(x), ds.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if budget:  # the schedule's position is the fraction of the budget spent
                spent = (time.perf_counter() - start) / budget
                while sched.last_epoch < min(int(spent * total), total - 1):
                    sched.step()
            else:
                sched.step()
            loss_value = 0.9 * loss_value + 0.1 * loss.item() if seen else loss.item()
            seen += idx.numel()
            done = time.perf_counter() - start if budget else sched.last_epoch
            bar.update(task, completed=done, info=f"epoch {epoch + 1} loss {loss_value:.3f}")
    seconds = time.perf_counter() - start
    model.to(memory_format=torch.contiguous_format)
    acc = evaluate_accuracy(model, ds, splits.target_test, input_size)
    if show_progress:
        console.print(
            f"test accuracy {acc:.2%} after {seconds / 60:.1f} min ({seen} samples = "
            f"{seen / n_train:.2f} epochs, {cfg.precision})"
        )
    return TrainReport(acc, seconds, seen, loss_value, opt.param_groups[0]["lr"])
