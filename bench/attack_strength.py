"""Attack strength on record: every registered attack at every default cut of the three seed
models (Fashion-MNIST), at 0.5x, 1x and 3x its default budget: SSIM / PSNR / re-identification
(reconstruction attacks) or accuracy (attribute), each with its bootstrap 95 % interval, the
strongest attack per cut, and its budget curve.

Targets: the audit's own recipe, 12,000 training samples x 1 epoch, seed 0, 2,000 aux / 256
victims (`privpart train MODEL --dataset fashion-mnist --train-limit 12000`); checkpoints are taken
from --checkpoint MODEL=DIR, else trained into WORK/targets/MODEL.

Resumable: every (model, cut, attack, budget) result is cached as WORK/results/MODEL/CUT/
ATTACK@SCALE.json; a re-run computes only what is missing, and --minutes stops a run after the
job that crosses that many minutes, so the grid can be done in chunks under the CPU lock:
    flock /tmp/privpart-cpu.lock .venv/bin/python bench/attack_strength.py --models vgg16 \
        --minutes 30
    .venv/bin/python bench/attack_strength.py --report     # render what is there
The report says which cells are missing. In one process the `prior` attacks' VAE is trained
once per model and reused at the model's other cuts (aux images only; `info.vae.spent_seconds`
is 0 then).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from _common import cpu_steal_percent, machine, write
from privpart.attacks import ATTACKS, DEFAULT_ATTACKS, Budget, compute_feature_sets, run_attack
from privpart.attacks.result import AttackResult
from privpart.auditing.cutpick import resolve_cuts
from privpart.training import train_to_checkpoint
from privpart.training.target import Target

MODELS = ["vgg16", "resnet50", "efficientnet_b0"]
SCALES = [0.5, 1.0, 3.0]
RECONSTRUCTION = ("ssim", "psnr", "reid")


def parse_checkpoints(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        model, _, path = item.partition("=")
        out[model] = Path(path)
    return out


def target_for(model: str, args: argparse.Namespace) -> Path:
    given = parse_checkpoints(args.checkpoint).get(model)
    if given is not None:
        return given
    ckpt = args.work / "targets" / model
    if not (ckpt / "meta.json").is_file():
        train_to_checkpoint(model, "fashion-mnist", ckpt, train_limit=12000, epochs=1, seed=0,
                            n_aux=2000, n_victim=256)  # fmt: skip
    return ckpt


def cell_path(work: Path, model: str, cut: str, attack: str, scale: float) -> Path:
    return work / "results" / model / cut / f"{attack}@{scale:g}.json"


def summarise(r: AttackResult, scale: float, wall: float) -> dict:
    """The figures of one run, with intervals, steps and seconds."""
    metrics = {}
    for name, m in r.metrics.items():
        iv = m.estimate.interval
        metrics[name] = {
            "value": m.value,
            "low": None if iv is None else iv.low,
            "high": None if iv is None else iv.high,
            "n": m.estimate.n,
            "baselines": m.baselines,
        }
    cfg = r.config
    steps = None
    for key in ("inversion", "fit", "latent", "inverse", "decoder"):
        if isinstance(cfg.get(key), dict) and "steps" in cfg[key]:
            steps = cfg[key]["steps"]
            break
    return {
        "attack": r.attack,
        "threat_model": r.threat_model.value,
        "cut": r.cut,
        "scale": scale,
        "metrics": metrics,
        "seconds": r.seconds,
        "wall_seconds": wall,
        "steps": steps,
        "budget": cfg.get("budget"),
        "vae_reused": (cfg.get("vae") or {}).get("spent_seconds") == 0.0,
        "info": {
            k: cfg[k] for k in ("tv_weight", "refine_tv", "picked", "attribute") if k in cfg
        },  # fmt: skip
    }


def run_grid(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    for model in args.models:
        ckpt = target_for(model, args)
        target = Target.load(ckpt)
        cuts = resolve_cuts(target.partition, "default")
        if args.cuts:
            cuts = [c for c in cuts if c.name in args.cuts]
        todo = [(c.name, a, s) for c in cuts for a in args.attacks for s in args.scales
                if not cell_path(args.work, model, c.name, a, s).is_file()]  # fmt: skip
        if not todo:
            continue
        sets = compute_feature_sets(
            target.partition, target.dataset, target.splits,
            [c for c in cuts if any(t[0] == c.name for t in todo)], target.input_size,
            show_progress=False, task=target.task,
        )  # fmt: skip
        index = {c.name: c.index for c in cuts}
        for cut, attack, scale in todo:
            if args.minutes and time.perf_counter() - started > args.minutes * 60:
                print(f"stopping after {args.minutes} minutes; re-run to continue", flush=True)
                return
            cls = ATTACKS.get(attack)
            budget = None if scale == 1.0 else Budget().scaled(scale, cls.default_seconds)
            t = time.perf_counter()
            res = run_attack(attack, sets[cut], budget, seed=args.seed)
            out = summarise(res, scale, time.perf_counter() - t)
            out["model"], out["cut_index"] = model, index[cut]
            out["test_accuracy"] = target.meta.get("test_accuracy")
            out["target"], out["steal_percent"] = str(ckpt), cpu_steal_percent()
            path = cell_path(args.work, model, cut, attack, scale)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(out, indent=1))
            head = res.headline
            print(f"{model} {cut:>14} {attack:>14} x{scale:g}: {head.spec.name} "
                  f"{head.value:.3f}" + (f" reid {res.reid:.2f}" if "reid" in res.metrics else "")
                  + f" ({out['wall_seconds']:.0f} s)", flush=True)  # fmt: skip


# -- the report -----------------------------------------------------------------------------
def load_cells(work: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((work / "results").glob("*/*/*.json"))]


def fig(cell: dict | None, metric: str, fmt: str = ".3f") -> str:
    if cell is None or metric not in cell["metrics"]:
        return "-"
    m = cell["metrics"][metric]
    if m["value"] is None:
        return "n/a"
    s = format(m["value"], fmt)
    if m["low"] is not None and metric != "psnr":
        s += f" [{format(m['low'], fmt)}, {format(m['high'], fmt)}]"
    return s


def strongest(cells: dict[str, dict], metric: str) -> str | None:
    """The attack with the highest figure of `metric` (1x budget) among those that have it;
    ties go to the higher SSIM, then to a default attack."""

    def value(c: dict, name: str) -> float:
        m = c["metrics"].get(name)
        return -float("inf") if m is None or m["value"] is None else m["value"]

    have = [a for a, c in cells.items() if value(c, metric) > -float("inf")]
    return max(have, key=lambda a: (value(cells[a], metric), value(cells[a], "ssim"),
                                    a in DEFAULT_ATTACKS)) if have else None  # fmt: skip


# a figure counts as outside an interval only beyond this, so two runs at the ceiling are not
# told apart by rounding noise
TOLERANCE = 1e-3


def above(value: float, ref: dict) -> bool:
    """`value` lies above the 95 % interval of the figure `ref`."""
    return value > ref["high"] + TOLERANCE


def below(value: float, ref: dict) -> bool:
    """`value` lies below the 95 % interval of the figure `ref`."""
    return value < ref["low"] - TOLERANCE


def _compare(got: dict, scale: float) -> tuple[str, bool | None]:
    """Where the figure at `scale` lies against the 1x 95 % interval."""
    one, other = got.get(1.0), got.get(scale)
    if one is None or other is None or one["low"] is None:
        return "-", None
    if scale > 1.0:
        up = above(other["value"], one)
        return ("still rising" if up else "within 1x interval"), up
    down = below(other["value"], one)
    return ("weaker" if down else "within 1x interval"), down


def cut_order(by: dict) -> dict[tuple[str, str], int]:
    """(model, cut) -> the cut's index in its model, from the cells themselves."""
    return {(m, c): cell.get("cut_index", 0) for (m, c, _, _), cell in by.items()}


def budget_curves(by: dict, models: list[str], scales: list[float]) -> list[str]:
    """One row per (model, cut, attack, figure) run at more than one budget, so what a budget cut
    costs, and whether leakage still grows past 1x, are read off the bench's own cells."""
    rows, counts = [], {"weaker": 0, "below-same": 0, "still rising": 0, "above-same": 0}
    order, cuts = {m: i for i, m in enumerate(models)}, cut_order(by)
    keys = sorted(
        {k[:3] for k in by if k[0] in order},
        key=lambda k: (order[k[0]], cuts[k[:2]], k[2]),
    )
    for model, cut, attack in keys:
        have = [s for s in scales if (model, cut, attack, s) in by]
        if len(have) < 2:
            continue
        for metric in ("ssim", "reid", "accuracy"):
            got = {s: by[(model, cut, attack, s)]["metrics"].get(metric) for s in have}
            if any(m is None or m["value"] is None for m in got.values()):
                continue
            smaller, b = _compare(got, min(have)) if min(have) < 1.0 else ("-", None)
            larger, u = _compare(got, max(have)) if max(have) > 1.0 else ("-", None)
            if b is not None:
                counts["weaker" if b else "below-same"] += 1
            if u is not None:
                counts["still rising" if u else "above-same"] += 1
            cells = [f"{got[s]['value']:.3f}" if s in got else "-" for s in scales]
            rows.append(f"| {model} | {cut} | {attack} | {metric} | " + " | ".join(cells)
                        + f" | {smaller} | {larger} |")  # fmt: skip
    if not rows:
        return []
    return [
        "## Budget curves", "",
        "Every (cut, attack) run at more than one budget, each figure compared with its 1x 95 % "
        "interval. *Weaker* below 1x is what a budget cut costs in strength; *still rising* "
        "above 1x means the 1x verdict is a lower bound on what a more patient attacker gets.",
        "",
        "| model | cut | attack | figure | " + " | ".join(f"{s:g}x" for s in scales)
        + " | smallest vs 1x | largest vs 1x |",
        "|---|---|---|---|" + "---|" * len(scales) + "---|---|",
        *rows, "",
        f"Below 1x: {counts['weaker']} figure(s) weaker, {counts['below-same']} within the 1x "
        f"interval. Above 1x: {counts['still rising']} still rising, {counts['above-same']} "
        "within the 1x interval.", "",
    ]  # fmt: skip


def curve(by: dict, model: str, cut: str, attack: str, metric: str, scales: list[float]) -> str:
    """`attack`'s `metric` at each budget, "-" where that cell was not run."""
    out = []
    for s in scales:
        c = by.get((model, cut, attack, s))
        m = None if c is None else c["metrics"].get(metric)
        out.append("-" if m is None or m["value"] is None else f"{m['value']:.3f}")
    return " / ".join(out)


def at_ceiling(cell: dict) -> bool:
    """The attack already reconstructs (SSIM >= 0.995) or re-identifies (>= 0.995) every victim:
    the cut is broken at 1x, so no larger budget can change its verdict."""
    return any(
        cell["metrics"].get(k) and (cell["metrics"][k]["value"] or 0) >= 0.995
        for k in ("ssim", "reid")
    )


def missing_section(missing: list[tuple[str, str, str, float]], nothing_run: list[str],
                    ceiling: set[tuple[str, str]]) -> list[str]:  # fmt: skip
    """What was not run, grouped by model and budget; cells above 1x at a cut whose strongest
    attack is already at the ceiling are listed apart, since they cannot change its verdict."""
    lines = ["## Missing cells", ""]
    if not missing and not nothing_run:
        return [*lines, "none: the grid is complete", ""]
    lines += [f"- {m}: nothing run" for m in nothing_run]
    for label, pick in (
        ("not run", lambda m, c, s: not (s > 1.0 and (m, c) in ceiling)),
        ("not run, cut at the ceiling at 1x (a larger budget cannot change its verdict)",
         lambda m, c, s: s > 1.0 and (m, c) in ceiling),
    ):  # fmt: skip
        groups: dict[tuple[str, float], dict[str, list[str]]] = {}
        for m, c, a, s in missing:
            if pick(m, c, s):
                groups.setdefault((m, s), {}).setdefault(c, []).append(a)
        for (m, s), per_cut in sorted(groups.items()):
            n = sum(len(v) for v in per_cut.values())
            where = "; ".join(f"{c}: {', '.join(v)}" for c, v in per_cut.items())
            lines.append(f"- {m} {s:g}x, {label}: {n} cells ({where})")
    return [*lines, ""]


def defaults_check(by: dict, models: list[str]) -> list[str]:
    """Does the audit's default list hold the strongest attack at every cut? Per cut and figure
    (1x): the best default attack beside the best other one; an other one above the default's
    95 % interval is leakage the default audit would miss."""
    rows, misses = [], []
    index = cut_order(by)
    cuts = sorted({(m, c) for m, c, _, s in by if s == 1.0 and m in models},
                  key=lambda k: (models.index(k[0]), index[k]))  # fmt: skip
    for model, cut in cuts:
        one = {a: c for (m, c_, a, s), c in by.items() if (m, c_, s) == (model, cut, 1.0)}
        for metric in ("ssim", "reid"):
            default = {a: c for a, c in one.items() if a in DEFAULT_ATTACKS}
            other = {a: c for a, c in one.items() if a not in DEFAULT_ATTACKS}
            d, o = strongest(default, metric), strongest(other, metric)
            if d is None or o is None:
                continue
            dm, om = default[d]["metrics"][metric], other[o]["metrics"][metric]
            missed = dm["high"] is not None and above(om["value"], dm)
            if missed:
                misses.append(f"{model} {cut} {metric}: {o}")
            rows.append(f"| {model} | {cut} | {metric} | {d} {dm['value']:.3f} | "
                        f"{o} {om['value']:.3f} | {om['value'] - dm['value']:+.3f} | "
                        f"{'**missed**' if missed else 'no'} |")  # fmt: skip
    if not rows:
        return []
    return [
        "## Do the default attacks find the most leakage?", "",
        "Per cut (1x): the strongest of the audit's default attacks beside the strongest of the "
        "others. *Missed* means the other attack lies above the default's 95 % interval: leakage "
        "a default audit would not see.", "",
        "| model | cut | figure | best default | best other | difference | missed |",
        "|---|---|---|---|---|---|---|", *rows, "",
        ("Missed: " + "; ".join(misses) + ".") if misses
        else "No cut where another attack beats the defaults beyond their interval.", "",
    ]  # fmt: skip


def report(args: argparse.Namespace) -> None:
    cells = load_cells(args.work)
    by = {(c["model"], c["cut"], c["attack"], c["scale"]): c for c in cells}
    attacks = [a for a in ATTACKS.names() if any(c["attack"] == a for c in cells)]
    lines = [
        "# Attack strength per cut and budget (Fashion-MNIST, CPU)",
        "",
        f"machine: {machine()}. Targets: 12,000 training samples x 1 epoch, seed 0, 2,000 aux / "
        "256 victims (the quickstart audit's recipe). Every attack at its default budget (1x) "
        "and at 0.5x / 3x (`Budget().scaled`: time and step cap scale together). Figures are "
        "means over the scored victims with bootstrap 95 % intervals; `whitebox` and `prior` "
        "score the first 64 victims, the others all 256. Re-identification: the reconstruction "
        "picks its input out of 10 same-class victims (chance 0.10).",
        "",
        "Default attacks of the audit: " + ", ".join(DEFAULT_ATTACKS) + ".",
        "",
    ]
    missing: list[tuple[str, str, str, float]] = []
    nothing_run: list[str] = []
    ceiling: set[tuple[str, str]] = set()
    summary_rows = []
    for model in args.models:
        model_cells = [c for c in cells if c["model"] == model]
        if not model_cells:
            nothing_run.append(model)
            continue
        cuts = list(dict.fromkeys(c["cut"] for c in sorted(
            model_cells, key=lambda c: c.get("cut_index", 0))))  # fmt: skip
        acc = model_cells[0].get("test_accuracy")
        lines += [f"## {model} (test accuracy {acc:.1%})" if acc else f"## {model}", ""]
        targets = Counter(c.get("target", "not recorded") for c in model_cells)
        named = [f"`{t}` ({n} cells)" if t != "not recorded" else f"not recorded ({n} cells)"
                 for t, n in targets.items()]  # fmt: skip
        lines += ["Target checkpoint(s): " + "; ".join(named) + ".", ""]
        for cut in cuts:
            lines += [f"### {cut}", "",
                      "| attack | threat model | budget | SSIM [95 % CI] | PSNR dB "
                      "| reid [95 % CI] | accuracy | steps | seconds |",
                      "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
            one = {}
            for a in attacks:
                for s in args.scales:
                    c = by.get((model, cut, a, s))
                    if c is None:
                        missing.append((model, cut, a, s))
                        continue
                    if s == 1.0:
                        one[a] = c
                    lines.append(
                        f"| {a} | {c['threat_model']} | {s:g}x | {fig(c, 'ssim')} | "
                        f"{fig(c, 'psnr', '.1f')} | {fig(c, 'reid', '.2f')} | "
                        f"{fig(c, 'accuracy')} | {c['steps'] if c['steps'] is not None else '-'} | "
                        f"{c['wall_seconds']:.0f} |"
                    )
            any_cell = next(iter(one.values()), None)
            if any_cell and "ssim" in any_cell["metrics"]:
                b = any_cell["metrics"]["ssim"]["baselines"]
                lines += ["", f"SSIM baselines: aux mean {b.get('aux_mean', float('nan')):.3f}, "
                          f"task-label floor {b.get('task_floor', float('nan')):.3f}."]  # fmt: skip
            best_ssim, best_reid = strongest(one, "ssim"), strongest(one, "reid")
            if best_ssim:
                ssim_curve = curve(by, model, cut, best_ssim, "ssim", args.scales)
                reid_curve = curve(by, model, cut, best_reid, "reid", args.scales)
                lines += ["", f"Strongest at 1x: SSIM **{best_ssim}** (budget curve "
                          f"{ssim_curve}); re-identification **{best_reid}** "
                          f"({reid_curve})."]  # fmt: skip
                summary_rows.append((model, cut, best_ssim, ssim_curve, best_reid, reid_curve))
                if at_ceiling(one[best_ssim]) or at_ceiling(one[best_reid]):
                    ceiling.add((model, cut))
            lines.append("")
    if summary_rows:
        scales = "/".join(f"{s:g}x" for s in args.scales)
        lines += ["## Strongest attack per cut (chosen at 1x) and its budget curve", "",
                  f"| model | cut | by SSIM | SSIM {scales} | by re-identification "
                  f"| reid {scales} |", "|---|---|---|---|---|---|"]  # fmt: skip
        for model, cut, a, c, r, rc in summary_rows:
            lines.append(f"| {model} | {cut} | {a} | {c} | {r} | {rc} |")
        lines.append("")
    lines += defaults_check(by, args.models)
    lines += budget_curves(by, args.models, args.scales)
    lines += missing_section(missing, nothing_run, ceiling)
    data = {"machine": machine(), "cells": cells,
            "missing": [f"{m} {c} {a} x{s:g}" for m, c, a, s in missing] + nothing_run,
            "default_attacks": list(DEFAULT_ATTACKS)}  # fmt: skip
    write("attack_strength", data, "\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--cuts", nargs="*", help="only these cuts (default: the audit's defaults)")
    ap.add_argument("--attacks", nargs="*", default=None, help="default: every registered one")
    ap.add_argument("--scales", type=float, nargs="*", default=SCALES)
    ap.add_argument("--checkpoint", action="append", default=[], metavar="MODEL=DIR")
    ap.add_argument("--work", type=Path, default=Path("runs/bench-attack-strength"))
    ap.add_argument("--minutes", type=float, default=None, help="stop after this many minutes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report", action="store_true", help="only render the report")
    args = ap.parse_args()
    args.attacks = args.attacks or ATTACKS.names()
    if not args.report:
        run_grid(args)
    report(args)


if __name__ == "__main__":
    main()
