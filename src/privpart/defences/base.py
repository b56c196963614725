"""The defence contract: declared, validated parameters, and one `train` that turns an
undefended checkpoint into a defended one at a cut.

A defence fine-tunes the model from the given checkpoint on the defender's own data (the
checkpoint's target-train split: never the attacker's aux set, never the victims) and writes a
new checkpoint whose meta.json records `"defence": {method, cut, params, task_accuracy, ...}`.
It is then judged like any model: by a fresh audit whose attackers are trained from scratch
against the frozen defended head. Whatever adversary a defence trains inside its loop is
discarded with it, so a defence cannot grade its own homework.

Subclasses say what is specific to them: `params` (declared with validation), `check` (data-
dependent validation, before any training), `loss` (one batch's objective), optionally `setup`,
`trainable` and, if the defence changes inference (noise), `deploy` + `restore`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from privpart.data import Attribute, Dataset, DataSplits
from privpart.device import resolve_device
from privpart.errors import PrivpartError, PrivpartValueError
from privpart.models import ModelSpec
from privpart.params import Param, resolve
from privpart.partition import Cut, Partition, Split
from privpart.training import DEFAULT_LR, evaluate_accuracy, read_meta, save_checkpoint
from privpart.training.checkpoint import file_sha256
from privpart.training.target import Target
from privpart.ui import console, progress

FINE_TUNE_LR_FACTOR = 0.5  # fine-tuning starts at half the model's from-scratch peak rate


# Parameters every defence shares: how much fine-tuning it gets.
COMMON: dict[str, Param] = {
    "epochs": Param(1, "passes over the defender's training samples", int, 1),
    "limit": Param(
        10000, "defender's training samples (from the target-train split)", int, 1, optional=True
    ),
    "steps": Param(None, "cap on optimisation steps (quick runs, tests)", int, 1, optional=True),
    "batch_size": Param(64, "samples per step", int, 2),
    "lr": Param(
        None,
        "peak learning rate (default: half the model's training rate)",
        float,
        0.0,
        exclusive=True,
        optional=True,
    ),
    "seed": Param(0, "seed for order, initialisation and noise", int),
}


@dataclass
class DefenceContext:
    """Everything one defence run works on; built and validated before any training."""

    model: nn.Module  # the undefended model, fine-tuned in place
    meta: dict
    spec: ModelSpec
    partition: Partition
    cut: Cut
    split: Split  # head/tail share the model's parameters: training them trains the model
    ds: Dataset  # task labels already swapped in (`Dataset.with_task`)
    splits: DataSplits
    train_index: Tensor  # the defender's samples: a prefix of target-train
    input_size: tuple[int, int]
    params: dict[str, Any]
    show_progress: bool = True
    private: Attribute | None = None  # the attribute to hide, if the defence takes one
    state: dict[str, Any] = field(default_factory=dict)  # what a defence records in meta.json
    device: torch.device = torch.device("cpu")  # where the model and adversaries train

    def inputs(self, idx: Tensor) -> Tensor:
        """The samples `idx` as model inputs on the device."""
        return self.ds.inputs(idx, self.input_size, self.device)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.cut.shape)

    def require_module(self, what: str) -> None:
        """Defences that wrap the module at the cut need one there (not a function in forward)."""
        name = self.cut.name
        try:
            self.model.get_submodule(name)
        except AttributeError:
            raise PrivpartError(
                f"the {what}, and cut {name!r} is not a module (it is a function in forward())",
                "choose a cut named after a module (see `privpart cuts`), e.g. a block boundary",
            ) from None

    def batches(self, epoch: int) -> Iterator[Tensor]:
        """Seeded shuffle of the defender's samples, one index batch at a time."""
        g = torch.Generator().manual_seed(int(self.params["seed"]) * 1000 + epoch)
        order = self.train_index[torch.randperm(self.train_index.numel(), generator=g)]
        bs = int(self.params["batch_size"])
        for i in range(0, order.numel() - bs + 1, bs):
            yield order[i : i + bs]


class Defence(ABC):
    """One defence. `Defence(**params)` validates every parameter before any work."""

    name: ClassVar[str]
    summary: ClassVar[str]
    params: ClassVar[dict[str, Param]] = {}
    wrapper: ClassVar[str | None] = None  # inference-time module it deploys (models.wrappers)

    def __init__(self, **params: Any) -> None:
        self.values: dict[str, Any] = resolve(f"defence {self.name!r}", self.declared(), params)

    @classmethod
    def declared(cls) -> dict[str, Param]:
        return {**COMMON, **cls.params}

    # -- what subclasses provide -------------------------------------------------------------
    def check(self, ctx: DefenceContext) -> None:  # noqa: B027  (optional hook)
        """Validation that needs the model or the data (before any training)."""

    def setup(self, ctx: DefenceContext) -> None:  # noqa: B027  (optional hook)
        """Build extra networks (adversaries, noise) before the first step."""

    def trainable(self, ctx: DefenceContext) -> list:
        """Parameters (or Adam parameter groups) the task optimiser updates: head and tail by
        default."""
        return [p for p in ctx.model.parameters() if p.requires_grad]

    def default_lr(self, ctx: DefenceContext) -> float:
        """Half the model's from-scratch peak rate."""
        return FINE_TUNE_LR_FACTOR * DEFAULT_LR.get(ctx.spec.arch, 1e-3)

    @abstractmethod
    def loss(self, ctx: DefenceContext, x: Tensor, y: Tensor, idx: Tensor) -> tuple[Tensor, dict]:
        """The objective for one batch (inputs, task labels, dataset indices) and its logs."""

    def deploy(self, ctx: DefenceContext) -> nn.Module:
        """The model to save: the fine-tuned one, plus any inference-time module (noise)."""
        return ctx.model


    # -- the shared procedure ----------------------------------------------------------------
    def prepare(
        self,
        base: Path,
        cut: str,
        data_dir: Path | None,
        show_progress: bool,
        device: str | torch.device = "cpu",
        trust_code: bool = False,
    ) -> DefenceContext:
        """Load, split and validate everything; fails before any training (a checkpoint whose
        architecture is a Python file loads only with `trust_code`)."""
        meta = read_meta(base)
        if meta.get("defence"):
            raise PrivpartError(
                f"{base} is already defended ({meta['defence']['method']} at "
                f"{meta['defence']['cut']})",
                "defend the undefended checkpoint it was made from "
                f"({meta['defence'].get('base_checkpoint', 'see its meta.json')})",
            )
        target = Target.load(base, data_dir, trust_code=trust_code)
        model, meta, ds, splits, part = (
            target.model, target.meta, target.dataset, target.splits, target.partition
        )
        spec = ModelSpec.from_dict(meta["spec"])
        where = part.cut(cut)
        if where.position != "interior":
            raise PrivpartError(
                f"cut {cut!r} is the model's {where.position}: there is nothing to defend there",
                "choose an interior cut (see `privpart cuts`), e.g. a block boundary",
            )
        limit = self.values["limit"]
        train_index = splits.target_train[: limit or None]
        if train_index.numel() < self.values["batch_size"]:
            raise PrivpartValueError(
                f"only {train_index.numel()} training samples for batches of "
                f"{self.values['batch_size']}",
                "lower the defence's `batch_size`, or raise its `limit` (0: every sample)",
                param="batch_size",
            )
        ctx = DefenceContext(
            model=model,
            meta=meta,
            spec=spec,
            partition=part,
            cut=where,
            split=part.split(where),
            ds=ds,
            splits=splits,
            train_index=train_index,
            input_size=target.input_size,
            params=dict(self.values),
            show_progress=show_progress,
            device=resolve_device(device),
        )
        model.to(ctx.device)
        self.check(ctx)
        return ctx

    def total_steps(self, ctx: DefenceContext) -> int:
        per_epoch = ctx.train_index.numel() // int(self.values["batch_size"])
        total = per_epoch * int(self.values["epochs"])
        return min(total, self.values["steps"] or total)

    def fit(self, ctx: DefenceContext) -> dict:
        """Fine-tune head + tail on the defence's objective: Adam, cosine decay to 5%."""
        seed = int(self.values["seed"])
        torch.manual_seed(seed)
        self.setup(ctx)
        lr = self.values["lr"] or self.default_lr(ctx)
        opt = torch.optim.Adam(self.trainable(ctx), lr=lr)
        total = self.total_steps(ctx)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=0.05 * lr)
        start, step, logs, smooth = time.perf_counter(), 0, {}, {}
        with progress(disable=not ctx.show_progress) as bar:
            task = bar.add_task(f"{self.name} @ {ctx.cut.name}", total=total, info="")
            for epoch in range(int(self.values["epochs"])):
                batches = list(ctx.batches(epoch))[: max(total - step, 0)]
                for x, idx in ctx.ds.loader(batches, ctx.input_size, ctx.device):
                    ctx.model.train()
                    y = ctx.ds.labels[idx].to(ctx.device, non_blocking=True)
                    loss, logs = self.loss(ctx, x, y, idx)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    step += 1
                    smooth = {k: 0.9 * smooth.get(k, v) + 0.1 * v for k, v in logs.items()}
                    info = " ".join(f"{k} {v:.3f}" for k, v in smooth.items())
                    bar.update(task, completed=step, info=info)
        ctx.model.eval()
        return {
            "steps": step,
            "samples": step * int(self.values["batch_size"]),
            "lr": lr,
            "seconds": time.perf_counter() - start,
            "final_losses": smooth,
        }

    def train(
        self,
        base: Path,
        cut: str,
        out: Path,
        data_dir: Path | None = None,
        show_progress: bool = True,
        device: str | torch.device = "cpu",
        trust_code: bool = False,
    ) -> Path:
        """Fine-tune `base` against leakage at `cut` (on `device`); write the defended
        checkpoint to `out`."""
        ctx = self.prepare(Path(base), cut, data_dir, show_progress, device, trust_code)
        training = self.fit(ctx)
        model = self.deploy(ctx).eval()
        torch.manual_seed(int(self.values["seed"]))  # noise draws, if any, are reproducible
        accuracy = evaluate_accuracy(
            model, ctx.ds, ctx.splits.target_test, ctx.input_size, device=ctx.device
        )
        record = {
            "method": self.name,
            "wrapper": self.wrapper,
            "cut": ctx.cut.name,
            "params": dict(self.values),
            "task": ctx.meta.get("task", "class"),
            "task_accuracy": accuracy,
            "base_task_accuracy": ctx.meta.get("test_accuracy"),
            "base_checkpoint": str(base),
            "base_weights_sha256": ctx.meta["weights_sha256"],
            "base_meta_sha256": file_sha256(Path(base) / "meta.json"),
            "feature_shape": list(ctx.feature_shape),
            "training": training,
            "data": {"split": "target_train", "samples": int(ctx.train_index.numel())},
            "device": str(ctx.device),
            **ctx.state,
        }
        kept = {k: v for k, v in ctx.meta.items() if k not in ("spec", "weights_sha256")}
        meta = {**kept, "test_accuracy": accuracy, "defence": record}
        save_checkpoint(Path(out), model, ctx.spec, meta)
        if show_progress:
            base_acc = ctx.meta.get("test_accuracy")
            was = f" (undefended {base_acc:.2%})" if base_acc is not None else ""
            console.print(
                f"{self.name} defence at {ctx.cut.name}: task accuracy {accuracy:.2%}{was}, "
                f"{training['steps']} steps in {training['seconds'] / 60:.1f} min -> {out}"
            )
        return Path(out)
