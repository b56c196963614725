"""VGG-16 training-step throughput: fp32 against bf16 mixed precision, and the AdamW step.

What `privpart train --precision auto` rests on. Both precisions train the same model on the
same batch with privpart's optimiser (`make_adamw`, fused) and precision set-up
(`precision_setup`: bf16 autocast in channels-last layout), as `train_target` does. Rounds
alternate the order, and the speed-up is the median of per-round ratios, so a noisy host slows
both sides of a pair alike.
The optimiser rows time one AdamW step over VGG-16's parameters: per-tensor against fused.

Run: flock /tmp/privpart-cpu.lock .venv/bin/python bench/train_step.py [--rounds 12]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from _common import machine, write
from privpart.models import ModelSpec, build_model
from privpart.training.train import PRECISIONS, make_adamw, native_bf16, precision_setup

SPEC = ModelSpec("vgg16", 1, 10, (32, 32))
IMAGES_PER_ROUND = 256


def train_step(precision: str, batch: int) -> Callable[[], None]:
    torch.manual_seed(0)
    model = build_model(SPEC)
    layout, autocast = precision_setup(model, PRECISIONS[precision])
    x = torch.randn(batch, *SPEC.input_shape).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (batch,))
    opt = make_adamw(list(model.parameters()), 4e-4, 5e-4)
    model.train()

    def step() -> None:
        with autocast:
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    return step


def precision_rows(batches: list[int], rounds: int) -> list[dict]:
    rows = []
    for batch in batches:
        steps = {p: train_step(p, batch) for p in ("fp32", "bf16")}
        rates: dict[str, list[float]] = {p: [] for p in steps}
        ratios = []
        for r in range(rounds):
            for p in ("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32"):
                t = time.perf_counter()
                for _ in range(max(IMAGES_PER_ROUND // batch, 1)):
                    steps[p]()
                rates[p].append(IMAGES_PER_ROUND / (time.perf_counter() - t))
            ratios.append(rates["bf16"][-1] / rates["fp32"][-1])
        rows.append(
            {
                "batch": batch,
                "fp32_images_per_s": statistics.median(rates["fp32"]),
                "bf16_images_per_s": statistics.median(rates["bf16"]),
                "speedup": statistics.median(ratios),
                "speedup_min": min(ratios),
                "speedup_max": max(ratios),
            }
        )
    return rows


def optimiser_row(rounds: int) -> dict:
    model = build_model(SPEC)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    kinds = {
        "per-tensor": torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=5e-4),
        "fused": make_adamw(list(model.parameters()), 1e-4, 5e-4),
    }
    ms: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(rounds):
        for k, opt in kinds.items():
            t = time.perf_counter()
            opt.step()
            ms[k].append((time.perf_counter() - t) * 1e3)
    params = sum(p.numel() for p in model.parameters())
    return {"params": params, **{f"{k}_ms": statistics.median(v) for k, v in ms.items()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--batches", type=int, nargs="*", default=[32, 64])
    args = ap.parse_args()
    rows = precision_rows(args.batches, args.rounds)
    opt = optimiser_row(args.rounds * 2)
    lines = [
        "# VGG-16 training step on the CPU: fp32 against bf16 mixed precision",
        "",
        f"machine: {machine()}; native bf16 (AMX/AVX512-BF16): {native_bf16()}; "
        f"{args.rounds} alternating rounds of {IMAGES_PER_ROUND} images per setting",
        "",
        "| batch | fp32 images/s | bf16 images/s | bf16 / fp32 (median of pairs) | range |",
        "| ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['batch']} | {r['fp32_images_per_s']:.0f} | {r['bf16_images_per_s']:.0f} | "
            f"**{r['speedup']:.2f}** | {r['speedup_min']:.2f}-{r['speedup_max']:.2f} |"
        )
    lines += [
        "",
        f"AdamW step over {opt['params'] / 1e6:.1f}M parameters: per-tensor "
        f"{opt['per-tensor_ms']:.0f} ms, fused {opt['fused_ms']:.0f} ms "
        f"({opt['per-tensor_ms'] / opt['fused_ms']:.1f}x).",
    ]
    write(
        "train_step",
        {"machine": machine(), "rounds": args.rounds, "precision": rows, "optimiser": opt},
        "\n".join(lines) + "\n",
    )


if __name__ == "__main__":
    main()
