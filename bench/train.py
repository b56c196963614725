"""Target-model training on a Fashion-MNIST subset, 2 CPU cores: test accuracy and minutes.

Target (issue: Foundation): VGG-16 reaches >= 85% test accuracy within 10 minutes.
Run: .venv/bin/python bench/train.py [--only vgg16] [--out runs/bench-train]
A variant of the plan for one model is recorded as its own row:
     .venv/bin/python bench/train.py --only vgg16 --limit 36000 --epochs 1 --batch 32 --lr 6e-4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import RESULTS, machine, write
from privpart.training import read_meta, train_to_checkpoint

# (limit, epochs, batch size) chosen to fit each model in ~10 CPU minutes. VGG-16 on an idle
# 2-core VM (64-75 images/s at batch 32), test accuracy on 2,000 held-out images (+-0.8 points):
#   30k x 2, batch 64: 87.05% in 12.4 min     24k x 2, batch 32: 87.20% in 12.5 min
#   18k x 2, batch 32: 84.10% in 9.8 min      36k x 1, batch 32: 84.45% in 8.3 min
#   40k x 1, batch 32: 84.70% in 8.9 min      36k x 1, batch 32, lr 6e-4: 82.70% in 8.0 min
#   36k x 1, batch 16, lr 3e-4: 85.35% in 11.2 min (more steps per image, 53 images/s)
#   30k x 1, batch 16, lr 3e-4: 82.60% in 9.2 min
# Accuracy follows the images seen; >= 85% needs ~45k of them at batch 32: just over 10 minutes
# in fp32. Training now runs AdamW fused and, where the CPU has bf16 units (precision "auto"),
# in bf16 mixed precision: 84-91 images/s at batch 32 on a quiet host (40k x 1: 84.55% in
# 7.3 min), 67-68 when the hypervisor steals 10% (23k x 2: 86.70% in 11.2 min). VGG-16 therefore
# trains against the clock (--minutes): the schedule follows the wall clock and the run ends
# annealed at 9.5 minutes whatever the host's speed; what varies is the images seen.
PLAN: dict[str, dict] = {
    "vgg16": {"limit": 46000, "epochs": 1, "batch": 32, "minutes": 9.5},
    "resnet50": {"limit": 24000, "epochs": 2, "batch": 64},
    "efficientnet_b0": {"limit": 24000, "epochs": 2, "batch": 64},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", default=list(PLAN))
    ap.add_argument("--out", type=Path, default=Path("runs/bench-train"))
    ap.add_argument("--limit", type=int, help="override the plan's training samples")
    ap.add_argument("--epochs", type=int, help="override the plan's epochs")
    ap.add_argument("--batch", type=int, help="override the plan's batch size")
    ap.add_argument("--lr", type=float, help="override the model's default learning rate")
    ap.add_argument("--precision", help="auto (the default), fp32 or bf16 (mixed precision)")
    ap.add_argument("--minutes", type=float, help="train against the clock (0: use epochs)")
    args = ap.parse_args()
    overrides = (args.limit, args.epochs, args.batch, args.lr, args.precision, args.minutes)
    variant = any(v is not None for v in overrides)
    previous = RESULTS / "train.json"
    rows = json.loads(previous.read_text())["models"] if previous.is_file() else {}
    for arch in args.only:
        plan = PLAN[arch]
        limit, epochs = args.limit or plan["limit"], args.epochs or plan["epochs"]
        batch = args.batch or plan["batch"]
        minutes = plan.get("minutes") if args.minutes is None else args.minutes or None
        label = arch
        if variant:
            size = f"{limit // 1000}k " + (f"{minutes:g} min" if minutes else f"x {epochs}")
            lr = f", lr {args.lr:g}" if args.lr else ""
            lr += f", {args.precision}" if args.precision else ""
            label = f"{arch} ({size}, batch {batch}{lr})"
        t = time.perf_counter()
        ckpt = train_to_checkpoint(
            arch, "fashion-mnist", args.out / label.replace(" ", "_"), train_limit=limit,
            epochs=epochs, batch_size=batch, lr=args.lr, precision=args.precision or "auto",
            minutes=minutes,
        )  # fmt: skip
        meta = read_meta(ckpt)
        rows[label] = {
            "limit": limit,
            "epochs": epochs,
            "batch_size": batch,
            "test_accuracy": meta["test_accuracy"],
            "train_minutes": meta["train_seconds"] / 60,
            "wall_minutes": (time.perf_counter() - t) / 60,
            "test_samples": meta["split_sizes"]["target_test"],
            "lr": meta["train_config"]["lr"],
            "precision": meta["train_config"]["precision"],
            "images_per_second": meta["samples_seen"] / meta["train_seconds"],
            "minutes_budget": minutes,
            "epochs_seen": meta["samples_seen"] / meta["split_sizes"]["target_train"],
        }
    lines = [
        "# Target training on Fashion-MNIST (CPU)",
        "",
        f"machine: {machine()}",
        "",
        "| model | train samples x epochs | batch | lr | precision | test accuracy | train minutes "
        "| images/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for arch, r in rows.items():
        rate = r.get("images_per_second")
        epochs = r["epochs"]
        if r.get("minutes_budget"):
            epochs = f"{r['epochs_seen']:.2f} ({r['minutes_budget']:g} min budget)"
        lines.append(
            f"| {arch} | {r['limit']} x {epochs} | {r.get('batch_size', 64)} | "
            f"{r.get('lr', '')} | {r.get('precision', 'fp32')} | {r['test_accuracy']:.2%} | "
            f"{r['train_minutes']:.1f} | {f'{rate:.0f}' if rate else '-'} |"
        )
    vgg = [k for k, r in rows.items() if k.startswith("vgg16") and r["train_minutes"] <= 10]
    met = [k for k in vgg if rows[k]["test_accuracy"] >= 0.85]
    verdict = f"met by {', '.join(met)}" if met else "MISSED"
    lines += [
        "",
        "Rows with images/s ran with the fused AdamW step; rows without predate it (per-tensor "
        "step, about 100 ms more per VGG-16 batch). Test accuracy is on 2,000 images (+-0.8).",
        "",
        f"VGG-16 target (>= 85% within 10 min): {verdict}",
    ]
    write("train", {"machine": machine(), "models": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
