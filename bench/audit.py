"""The main job, timed: `privpart audit` on VGG-16 / Fashion-MNIST with the README's defaults
(training included), then ResNet-50 and EfficientNet-B0, so every seed model has a verdict.

Target (issue: audit): the default audit finishes in <= 15 minutes on 2 CPU cores.
Run: .venv/bin/python bench/audit.py [--models vgg16 resnet50 efficientnet_b0] [--resume]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from _common import RESULTS, machine, write
from privpart.auditing import AuditConfig, Auditor, AuditResult
from privpart.report import render_report


def summarise(r: AuditResult) -> dict:
    cuts = []
    for c in r.cuts:
        recon = {a: v.ssim for a, v in c.attacks.items() if "ssim" in v.metrics}
        reid = {a: v.reid for a, v in c.attacks.items() if "reid" in v.metrics}
        ssim = next((v.metric("ssim") for v in c.attacks.values() if "ssim" in v.metrics), None)
        attr = c.attacks.get("attribute")
        acc = attr.metric("accuracy") if attr is not None else None
        cuts.append({
            "cut": c.name,
            "ssim": recon,
            "reid": reid,
            "ssim_baseline": None if ssim is None else ssim.baselines.get("aux_mean"),
            "ssim_task_floor": None if ssim is None else ssim.baselines.get("task_floor"),
            "attribute_accuracy": None if acc is None else acc.value,
            "attribute_baseline": None if acc is None else acc.baselines.get("majority"),
            "total_ms": c.latency.total_ms,
            "verdict": c.verdict.status.value,
            "borderline": c.verdict.borderline,
            "reason": c.verdict.text,
        })  # fmt: skip
    return {
        "selected_cut": r.selected_cut,
        "summary": r.selection.summary,
        "recommendation": r.selection.recommendation,
        "test_accuracy": r.model["test_accuracy"],
        "stage_minutes": {k: v / 60 for k, v in r.stage_seconds.items()},
        "whole_trusted_ms": r.extremes["whole_trusted"].total_ms,
        "whole_untrusted_ms": r.extremes["whole_untrusted"].total_ms,
        "cuts": cuts,
        "recon_attacks": list(dict.fromkeys(a for c in cuts for a in c["ssim"])),
        "attacks": list(r.config.attacks),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=["vgg16", "resnet50", "efficientnet_b0"])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-audit"))
    ap.add_argument("--resume", action="store_true", help="keep earlier runs' caches")
    ap.add_argument(
        "--checkpoints",
        type=Path,
        help="reuse DIR/MODEL checkpoints (bench/train.py --out) for every model but vgg16, whose "
        "audit is timed with its training as the README runs it",
    )
    args = ap.parse_args()
    rows = {}
    for model in args.models:
        out = args.out / model
        if out.exists() and not args.resume:
            shutil.rmtree(out)
        t = time.perf_counter()
        ckpt = args.checkpoints / model if args.checkpoints and model != "vgg16" else None
        if ckpt is not None and not (ckpt / "meta.json").is_file():
            ckpt = None
        cfg = AuditConfig(model=model, checkpoint=str(ckpt) if ckpt else None)
        r = Auditor(cfg, out).run()
        render_report(out / "results.json")
        rows[model] = {
            "wall_minutes": (time.perf_counter() - t) / 60,
            "checkpoint": str(ckpt) if ckpt else "trained by the audit (README defaults)",
            **summarise(r),
        }
        shutil.copy(out / "leakage.png", RESULTS / f"audit_{model}_leakage.png")
        shutil.copy(out / "latency.png", RESULTS / f"audit_{model}_latency.png")

    lines = [
        "# privpart audit on Fashion-MNIST (README defaults, CPU)",
        "",
        f"machine: {machine()}",
        "",
    ]
    for model, s in rows.items():
        nested = {"train", "import", "defence"}  # parts of "prepare"
        stages = ", ".join(f"{k} {v:.1f}" for k, v in s["stage_minutes"].items()
                           if k != "total" and k not in nested)  # fmt: skip
        inner = [f"{k} {v:.1f}" for k, v in s["stage_minutes"].items() if k in nested]
        if inner and "prepare" in s["stage_minutes"]:
            prep = f"prepare {s['stage_minutes']['prepare']:.1f}"
            stages = stages.replace(prep, f"{prep} (incl. {', '.join(inner)})", 1)
        lines += [
            f"## {model}: {s['wall_minutes']:.1f} min wall ({stages} min)",
            "",
            f"model: {s['checkpoint']}; test accuracy {s['test_accuracy']:.1%}; attacks "
            f"{', '.join(s['attacks'])} (default budgets); reid = re-identification among 10 "
            "same-class victims (chance 0.10); "
            f"verdict: {s['summary']} "
            f"{s['recommendation']}",
            "",
            "| cut | " + " | ".join(f"{a} SSIM / reid" for a in s["recon_attacks"])
            + " | SSIM baseline / task floor | attribute acc (baseline) | total ms | verdict |",
            "| --- | " + " | ".join("---" for _ in s["recon_attacks"])
            + " | --- | --- | --- | --- |",
        ]
        for c in s["cuts"]:
            ss = [
                f"{c['ssim'][a]:.2f} / {c['reid'][a]:.2f}" if a in c["ssim"] else "-"
                for a in s["recon_attacks"]
            ]
            acc = (
                f"{c['attribute_accuracy']:.2f} ({c['attribute_baseline']:.2f})"
                if c["attribute_accuracy"] is not None
                else "-"
            )
            base = f"{c['ssim_baseline']:.2f}" if c["ssim_baseline"] is not None else "-"
            if c.get("ssim_task_floor") is not None:
                base += f" / {c['ssim_task_floor']:.2f}"
            border = " (borderline)" if c.get("borderline") else ""
            lines.append(
                f"| {c['cut']} | {' | '.join(ss)} | {base} | {acc} | "
                f"{c['total_ms']:.2f} | {c['verdict']}{border} |"
            )
        lines += [
            "",
            f"whole model trusted {s['whole_trusted_ms']:.2f} ms; whole model "
            f"untrusted {s['whole_untrusted_ms']:.2f} ms",
            "",
        ]
    if "vgg16" in rows:
        m = rows["vgg16"]["wall_minutes"]
        lines.append(
            f"Default audit (vgg16) within 15 minutes: {'met' if m <= 15 else 'MISSED'} "
            f"({m:.1f} min)"
        )
    write("audit", {"machine": machine(), "models": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
