"""Leakage attacks on VGG-16 / Fashion-MNIST, per cut from shallow to deep, at the default budget;
then the strongest attack's SSIM against its budget at one mid cut.

Targets (issue: attacks): the best attack reaches SSIM >= 0.8 at the first cut; leakage falls
with depth; all four attacks at one cut fit in <= 2 minutes on 2 CPU cores (default budgets:
cgan 40 s, decoder 30 s, whitebox 30 s, attribute 10 s); a larger budget buys strength.

Run: flock /tmp/privpart-cpu.lock .venv/bin/python bench/attacks.py [--checkpoint DIR]
Without --checkpoint it trains VGG-16 on 12k Fashion-MNIST images for one epoch (~6 min).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from _common import RESULTS, machine, write
from privpart.attacks import (
    ATTACKS,
    DEFAULT_ATTACKS,
    AttackResult,
    Budget,
    FeatureSet,
    compute_feature_sets,
    run_attack,
)
from privpart.data import load_dataset, splits_from_meta
from privpart.partition import Partition
from privpart.training import load_checkpoint, train_to_checkpoint

CUTS = ["features.4", "features.9", "features.16", "features.23", "features", "classifier.1"]
RECON = ["cgan", "decoder", "whitebox"]
EXTRA_ATTRIBUTE = "group"  # a function of the class label: its task-label floor is 1.0


def summary(r: AttackResult) -> dict:
    fit = r.config.get("fit") or r.config.get("inversion") or {}
    # the flat layout this bench's tables read: figures, and baselines under schema 1's names
    names = {("ssim", "aux_mean"): "ssim", ("ssim", "task_floor"): "task_floor_ssim",
             ("psnr", "aux_mean"): "psnr", ("accuracy", "majority"): "accuracy",
             ("accuracy", "chance"): "chance", ("accuracy", "task_floor"): "task_floor"}
    return {
        "metrics": {k: m.value for k, m in r.metrics.items()},
        "intervals": {k: m.estimate.to_dict()["interval"] for k, m in r.metrics.items()},
        "baselines": {names[(k, b)]: v for k, m in r.metrics.items()
                      for b, v in m.baselines.items() if (k, b) in names},
        "seconds": r.seconds,
        "steps": fit.get("steps"),
        "step_cap": fit.get("step_cap"),
        "budget_seconds": fit.get("seconds"),
        "victims_scored": r.config.get("victims_scored"),
        "attribute": r.config.get("attribute"),
    }


def save_grid(rows: dict[str, AttackResult], originals: torch.Tensor, path: Path) -> None:
    """Victims (top) and the best reconstruction at each cut (one row per cut)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = min(8, originals.shape[0])
    fig, axes = plt.subplots(len(rows) + 1, k, figsize=(k * 0.9, (len(rows) + 1) * 0.95))
    for j in range(k):
        axes[0][j].imshow(originals[j, 0], cmap="gray", vmin=0, vmax=1)
    axes[0][0].set_title("victims", fontsize=7, loc="left")
    for i, (cut, res) in enumerate(rows.items(), start=1):
        for j in range(k):
            axes[i][j].imshow(res.samples[j, 0], cmap="gray", vmin=0, vmax=1)
        axes[i][0].set_title(f"{cut}: {res.attack} SSIM {res.ssim:.2f}", fontsize=7,
                             loc="left")  # fmt: skip
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(data: dict) -> str:
    m = data["machine"]
    lines = [
        "# Leakage attacks per cut: VGG-16 on Fashion-MNIST",
        "",
        f"Target model: test accuracy {data['test_accuracy']:.1%}; "
        f"{data['sizes']['aux']} aux / {data['sizes']['victim']} victim samples "
        f"(whitebox inverts the first {data['whitebox_victims']}); {m['cpu']}, "
        f"{m['cores']} threads, torch {m['torch']}. One forward pass for the features of all "
        f"{len(data['cuts'])} cuts: {data['feature_seconds']:.0f} s. Default budgets: "
        + ", ".join(f"{a} {s:.0f} s" for a, s in data["default_seconds"].items())
        + ".",
        "",
        "SSIM of reconstructions vs victims (baseline: aux-mean image); attribute accuracy "
        f"(`{data['attribute']}`, and `{EXTRA_ATTRIBUTE}`) vs majority-class baseline / chance / "
        "task-label floor (the attribute guessed from the class label alone).",
        "",
        "| cut | shape | cgan | decoder | whitebox | baseline | best PSNR dB | "
        f"{data['attribute']} acc (maj / chance) | {EXTRA_ATTRIBUTE} acc (maj / chance) | "
        "seconds cgan / dec / wb / attr | total s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in data["cuts"]:
        a = row["attacks"]

        def acc(r: dict) -> str:
            b = r["baselines"]
            fl = f" / floor {b['task_floor']:.3f}" if "task_floor" in b else ""
            return f"{r['metrics']['accuracy']:.3f} ({b['accuracy']:.3f} / {b['chance']:.3f}{fl})"

        best = max(RECON, key=lambda n: a[n]["metrics"]["ssim"])
        cells = [f"**{a[n]['metrics']['ssim']:.3f}**" if n == best
                 else f"{a[n]['metrics']['ssim']:.3f}" for n in RECON]  # fmt: skip
        secs = " / ".join(f"{a[n]['seconds']:.0f}" for n in DEFAULT_ATTACKS)
        lines.append(
            f"| {row['cut']} | {'x'.join(map(str, row['shape']))} | {' | '.join(cells)} | "
            f"{a['decoder']['baselines']['ssim']:.3f} | {a[best]['metrics']['psnr']:.1f} | "
            f"{acc(a['attribute'])} | {acc(a['attribute_extra'])} | {secs} | "
            f"{row['default_seconds_total']:.0f} |"
        )
    bc = data["budget_curve"]
    lines += [
        "",
        f"## {bc['attack']} at {bc['cut']}: SSIM against budget",
        "",
        "| budget x | seconds budget | steps done | SSIM | PSNR dB | wall s |",
        "|---|---|---|---|---|---|",
    ]
    for p in bc["points"]:
        lines.append(
            f"| {p['scale']:g} | {p['budget_seconds']:.0f} | {p['steps']} | {p['ssim']:.3f} | "
            f"{p['psnr']:.2f} | {p['seconds']:.0f} |"
        )
    lines += ["", "## Findings", "", *[f"- {f}" for f in data["findings"]], ""]
    return "\n".join(lines)


def findings(data: dict) -> list[str]:
    rows = data["cuts"]
    first, last = rows[0], rows[-1]
    out = []
    for row in rows:
        a = row["attacks"]
        best = max(RECON, key=lambda n: a[n]["metrics"]["ssim"])
        ratio = a[best]["metrics"]["ssim"] / max(a[best]["baselines"]["ssim"], 1e-9)
        out.append(
            f"{row['cut']}: strongest reconstruction {best} SSIM "
            f"{a[best]['metrics']['ssim']:.3f} ({ratio:.1f}x the aux-mean baseline); "
            f"{data['attribute']} {a['attribute']['metrics']['accuracy']:.1%} vs majority "
            f"{a['attribute']['baselines']['accuracy']:.1%}"
        )

    def best_ssim(row: dict) -> float:
        return max(row["attacks"][n]["metrics"]["ssim"] for n in RECON)

    out.append(
        f"first cut best SSIM {best_ssim(first):.3f} (target >= 0.8: "
        f"{'met' if best_ssim(first) >= 0.8 else 'NOT met'}); last cut {best_ssim(last):.3f}: "
        f"leakage falls {best_ssim(first) / max(best_ssim(last), 1e-9):.2f}x from first to last"
    )
    totals = [r["default_seconds_total"] for r in rows]
    out.append(
        f"all four attacks per cut at default budgets: {min(totals):.0f}-{max(totals):.0f} s "
        f"(target <= 120 s: {'met' if max(totals) <= 120 else 'NOT met'})"
    )
    pts = data["budget_curve"]["points"]
    out.append(
        f"budget curve ({data['budget_curve']['attack']} at {data['budget_curve']['cut']}): "
        + ", ".join(f"{p['scale']:g}x -> SSIM {p['ssim']:.3f}" for p in pts)
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, help="VGG-16 Fashion-MNIST checkpoint to reuse")
    ap.add_argument("--train-out", type=Path, default=Path("runs/bench-attacks-vgg16"))
    ap.add_argument("--cuts", nargs="*", default=CUTS)
    ap.add_argument("--curve-cut", default="features.16")
    ap.add_argument("--scales", type=float, nargs="*", default=[0.5, 1.0, 4.0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    ckpt = args.checkpoint
    if ckpt is None:
        ckpt = args.train_out
        if not (ckpt / "meta.json").is_file():
            train_to_checkpoint("vgg16", "fashion-mnist", ckpt, train_limit=12000, epochs=1)
    model, meta = load_checkpoint(ckpt, expect_arch="vgg16")
    ds = load_dataset(meta["dataset_spec"])
    splits = splits_from_meta(ds, meta)
    part = Partition(model, tuple(meta["input_shape"]))
    cuts = [part.cut(n) for n in args.cuts]
    t = time.perf_counter()
    sets: dict[str, FeatureSet] = compute_feature_sets(part, ds, splits, cuts, (32, 32))
    feature_seconds = time.perf_counter() - t

    rows, best_rows = [], {}
    for cut in cuts:
        fs = sets[cut.name]
        results = {}
        for name in DEFAULT_ATTACKS:
            results[name] = run_attack(name, fs, seed=args.seed, show_progress=True)
            print(f"{cut.name:>12} {name:>9}: "
                  + ", ".join(f"{k} {m.value:.3f}" for k, m in results[name].metrics.items())
                  + f"  ({results[name].seconds:.0f} s)", flush=True)  # fmt: skip
        extra = run_attack("attribute", fs, seed=args.seed, attribute=EXTRA_ATTRIBUTE)
        best = max(RECON, key=lambda n: results[n].ssim)
        best_rows[cut.name] = results[best]
        rows.append({
            "cut": cut.name,
            "shape": list(cut.shape),
            "attacks": {**{n: summary(r) for n, r in results.items()},
                        "attribute_extra": summary(extra)},
            "default_seconds_total": sum(r.seconds for r in results.values()),
            "best_reconstruction": best,
        })  # fmt: skip

    # Budget curve: the strongest attack at the curve cut, at scaled budgets.
    curve_fs = sets[args.curve_cut]
    curve_row = next(r for r in rows if r["cut"] == args.curve_cut)
    curve_attack = curve_row["best_reconstruction"]
    cls = ATTACKS.get(curve_attack)
    points = []
    for scale in args.scales:
        if scale == 1.0:
            s = curve_row["attacks"][curve_attack]
            res = {"ssim": s["metrics"]["ssim"], "psnr": s["metrics"]["psnr"],
                   "seconds": s["seconds"], "steps": s["steps"]}  # fmt: skip
        else:
            r = run_attack(curve_attack, curve_fs, Budget().scaled(scale, cls.default_seconds),
                           seed=args.seed, show_progress=True)  # fmt: skip
            res = {"ssim": r.ssim, "psnr": r.psnr, "seconds": r.seconds,
                   "steps": summary(r)["steps"]}  # fmt: skip
        points.append({"scale": scale, "budget_seconds": cls.default_seconds * scale, **res})
        print(f"budget {scale:g}x {curve_attack} @ {args.curve_cut}: SSIM {res['ssim']:.3f}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    save_grid(best_rows, sets[cuts[0].name].victim_inputs, RESULTS / "attacks_grid.png")
    fs0 = sets[cuts[0].name]
    attr_name = rows[0]["attacks"]["attribute"]["attribute"]
    data = {
        "machine": machine(),
        "checkpoint": str(ckpt),
        "test_accuracy": meta["test_accuracy"],
        "sizes": fs0.sizes(),
        "whitebox_victims": ATTACKS.get("whitebox").params["victims"].default,
        "feature_seconds": feature_seconds,
        "default_seconds": {n: ATTACKS.get(n).default_seconds for n in DEFAULT_ATTACKS},
        "attribute": attr_name,
        "cuts": rows,
        "budget_curve": {"cut": args.curve_cut, "attack": curve_attack, "points": points},
        "grid": "attacks_grid.png",
    }
    data["findings"] = findings(data)
    write("attacks", data, markdown(data))


if __name__ == "__main__":
    main()
