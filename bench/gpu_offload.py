"""Head on CPU + tail on GPU vs whole model on CPU, at 224x224, for the three seed models.

Needs a CUDA device (run it on the lent GPU machine); on a CPU-only machine it says so and exits.
Run: python bench/gpu_offload.py [--threads 4] [--repeats 20]
"""

from __future__ import annotations

import argparse
import sys

import torch

from _common import machine, write
from privpart.auditing import block_boundary_cuts
from privpart.models import ModelSpec, build_model
from privpart.partition import Partition
from privpart.profiling import ProfileConfig, profile_cuts, time_module


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=4, help="CPU threads for the head")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: run this benchmark on a machine with a GPU", file=sys.stderr)
        sys.exit(1)
    rows: dict[str, dict] = {}
    lines = [
        "# Head on CPU + tail on GPU vs whole model on CPU (224x224, batch 1)",
        "",
        f"machine: {machine()}",
        "",
    ]
    for arch in ("vgg16", "resnet50", "efficientnet_b0"):
        model = build_model(ModelSpec(arch, 3, 1000, (224, 224))).eval()
        part = Partition(model, (3, 224, 224))
        cfg = ProfileConfig(
            trusted_threads=args.threads,
            untrusted_device="cuda",
            repeats=args.repeats,
            link_latency_ms=0.0,
            bandwidth_mbit_s=1e9,
        )
        cpu = time_module(
            model, torch.rand(1, 3, 224, 224), "cpu", args.threads, repeats=args.repeats
        )
        prof = profile_cuts(part, block_boundary_cuts(part), cfg, show_progress=False)
        rows[arch] = {
            "whole_cpu_ms": cpu.median_ms,
            "cuts": {k: v.to_dict() for k, v in prof.cuts.items()},
        }
        lines += [
            f"## {arch}: whole model on CPU {cpu.median_ms:.1f} ms",
            "",
            "| cut | head CPU ms | tail GPU ms | end-to-end ms | speed-up vs CPU |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, p in prof.cuts.items():
            lines.append(
                f"| {name} | {p.head_ms:.2f} | {p.tail.median_ms:.2f} | "
                f"{p.total_ms:.2f} | {cpu.median_ms / p.total_ms:.2f}x |"
            )
        lines.append("")
    write("gpu_offload", {"machine": machine(), "models": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
