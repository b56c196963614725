"""Defences judged by every default and adaptive attack, with the certified bound beside them.

For a base checkpoint (a target trained to its normal accuracy) and a list of defence points,
each `METHOD@CUT:k=v,k=v`, this bench
  1. audits the undefended base at the points' cuts (the before),
  2. trains each point's defended checkpoint (`privpart.defences.defend`, cached under --work),
  3. audits the defended checkpoint at the cut that crosses to the untrusted side (`<cut>.noise`
     for `bottleneck`, `<cut>` otherwise), against keeping the whole model trusted: the default
     attacks plus every attack that knows the defence, fresh attackers trained from scratch,
     fixed step budgets (a loaded machine buys fewer steps with a clock: fixed steps keep
     defended and undefended audits comparable),
  4. writes bench/results/defence.{json,md,png}: per point the task accuracy and its cost, every
     attack's SSIM / re-identification with 95 % intervals against the limits, the verdict,
     whether the audit selects the defended cut, and the certified Fisher-information floor on
     an unbiased attacker's MSE beside the attacks' MSE; the PNG is the privacy/accuracy curve.

Run (one lock for every CPU benchmark):
  flock /tmp/privpart-cpu.lock .venv/bin/python bench/defence.py --base runs/vgg16-class \
      --points 'bottleneck@features.16:channels=4,sigma=2' --tag class
  .venv/bin/python bench/defence.py --report
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from _common import RESULTS, machine, write  # noqa: E402
from privpart.attacks import DEFAULT_ATTACKS, Budget  # noqa: E402
from privpart.auditing import AuditConfig, Auditor, AuditResult, schedule  # noqa: E402
from privpart.defences import defend  # noqa: E402
from privpart.training import read_meta  # noqa: E402

# Fixed per-attack step budgets: at least what the audit's default clocks buy at features.9 of
# the quickstart VGG-16 on 2 idle cores (the earlier defence bench used the same).
STEPS = {"cgan": 400, "decoder": 500, "whitebox": 200, "attribute": 1000, "prior": 200,
         "denoiser": 300, "prior-decoder": 300, "fora": 300}  # fmt: skip
STATE = RESULTS / "defence.json"


def use_step_budgets(scale: float) -> None:
    def budget(name: str, _scale: float, _steps: int | None = None) -> Budget:
        return Budget(steps=max(1, round(STEPS[name] * scale)))

    schedule.attack_budget = budget


def parse_point(text: str) -> tuple[str, str, dict]:
    """'bottleneck@features.16:channels=4,sigma=2' -> (method, cut, params)."""
    head, _, rest = text.partition(":")
    method, _, cut = head.partition("@")
    params: dict = {}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition("=")
        params[k.strip()] = number(v.strip())
    return method, cut, params


def number(text: str) -> int | float | str:
    """'3' -> 3, '1.0' -> 1.0, 'class' -> 'class' (a parameter naming an attribute)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def point_id(method: str, cut: str, params: dict) -> str:
    return f"{method}@{cut}:" + ",".join(f"{k}={v}" for k, v in sorted(params.items()))


def audited_cut(method: str, cut: str) -> str:
    return f"{cut}.noise" if method == "bottleneck" else cut


def summarise_cut(r: AuditResult, name: str) -> dict:
    c = r.cut(name)
    attacks = {}
    for a, res in c.attacks.items():
        row = {}
        for m in ("ssim", "reid", "mse", "accuracy"):
            if m in res.metrics:
                mr = res.metric(m)
                iv = mr.estimate.interval
                rule = r.config.constraints.rule(mr.spec)
                row[m] = {
                    "value": mr.value,
                    "interval": None if iv is None else [iv.low, iv.high],
                    "limit": None if rule is None else rule.limit(mr.spec, mr.baselines).value,
                    "baselines": dict(mr.baselines),
                }
        attacks[a] = row
    return {
        "cut": name,
        "shape": list(c.cut.shape),
        "attacks": attacks,
        "certified": None if c.certified is None else c.certified.to_dict(),
        "verdict": {"status": c.verdict.status.value, "short": c.verdict.short,
                    "text": c.verdict.text},  # fmt: skip
        "total_ms": c.latency.total_ms,
        "selected": r.selected_cut == name,
    }


def run_audit(base: Path, out: Path, cuts: str, args: argparse.Namespace) -> AuditResult:
    cfg = AuditConfig(checkpoint=str(base), cuts=cuts, attacks=list(DEFAULT_ATTACKS),
                      seed=args.seed, device="cpu")  # fmt: skip
    return Auditor(cfg, out, show_progress=True).run()


def measure(args: argparse.Namespace, state: dict) -> None:
    base = Path(args.base)
    meta = read_meta(base)
    tag = args.tag
    runs = state.setdefault("runs", {}).setdefault(tag, {"base": str(base), "points": {}})
    runs["base_accuracy"] = meta["test_accuracy"]
    runs["task"] = meta.get("task", "class")
    runs["arch"] = meta["spec"]["arch"]
    work = Path(args.work) / tag
    points = [parse_point(p) for p in args.points]
    undefended = sorted({cut for _, cut, _ in points})
    if undefended and not all(c in runs.get("undefended", {}) for c in undefended):
        r = run_audit(base, work / "undefended", ",".join(undefended), args)
        runs["undefended"] = {c: summarise_cut(r, c) for c in undefended}
        runs["undefended_whole_trusted_ms"] = r.extremes["whole_trusted"].total_ms
        save(state)
    for method, cut, params in points:
        pid = point_id(method, cut, params)
        folder = work / pid.replace(":", "_").replace(",", "_").replace("@", "_")
        t = time.perf_counter()
        ckpt = folder / "checkpoint"
        if not (ckpt / "meta.json").is_file():
            defend(base, method, cut, ckpt, params, show_progress=True, device="cpu")
        train_s = time.perf_counter() - t
        rec = read_meta(ckpt)["defence"]
        serve = audited_cut(method, cut)
        t = time.perf_counter()
        r = run_audit(ckpt, folder / "audit", serve, args)
        runs["points"][pid] = {
            "method": method,
            "cut": cut,
            "params": params,
            "record": {k: rec.get(k) for k in ("sigma", "channels", "params", "training",
                                                  "certified_on_defender_samples")},  # fmt: skip
            "task_accuracy": rec["task_accuracy"],
            "base_accuracy": rec["base_task_accuracy"],
            "served_cut": summarise_cut(r, serve),
            "other_cuts": {c.name: summarise_cut(r, c.name) for c in r.cuts if c.name != serve},
            "selected": r.selected_cut,
            "summary": r.selection.summary,
            "whole_trusted_ms": r.extremes["whole_trusted"].total_ms,
            "defence_seconds": train_s if train_s > 1 else rec["training"]["seconds"],
            "audit_seconds": time.perf_counter() - t,
        }
        save(state)


def save(state: dict) -> None:
    """Write the state, keeping the hand-written notes on disk (edited while a run goes on)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    if STATE.is_file():
        state["notes"] = json.loads(STATE.read_text()).get("notes", state.get("notes", []))
    STATE.write_text(json.dumps(state, indent=2))


def fig(cell: dict | None, digits: int = 3) -> str:
    if not cell:
        return "-"
    iv = cell["interval"]
    text = f"{cell['value']:.{digits}f}"
    return text + (f" ({iv[0]:.{digits}f}-{iv[1]:.{digits}f})" if iv else "")


def strongest(summary: dict, metric: str) -> tuple[str, dict] | None:
    found = [(a, row[metric]) for a, row in summary["attacks"].items() if metric in row]
    return max(found, key=lambda t: t[1]["value"]) if found else None


def attack_table(summary: dict) -> list[str]:
    lines = ["| attack | SSIM (95 %) | limit | re-identification (95 %) | limit | MSE |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for a, row in summary["attacks"].items():
        s, r, m = row.get("ssim"), row.get("reid"), row.get("mse")
        lines.append(
            f"| {a} | {fig(s)} | {s['limit']:.3f} | {fig(r, 2)} | {r['limit']:.2f} | "
            f"{m['value']:.4f} |" if s and r and m else
            f"| {a} | accuracy {fig(row.get('accuracy'))} | "
            f"{(row.get('accuracy') or {}).get('limit') or '-'} | - | - | - |"
        )  # fmt: skip
    return lines


def label(point: dict) -> str:
    """A point's settings, short: its legend entry."""
    params = {k: v for k, v in point["params"].items() if k != "limit"}
    return f"{point['cut']} " + ",".join(f"{k}={v}" for k, v in sorted(params.items()))


def plot(state: dict, path: Path) -> None:
    """The privacy/accuracy trade-off, one row per base model and one marker per defence point:
    its accuracy cost against the strongest re-identification and SSIM (empirical, 95 %
    intervals, with their limits), and the certified MSE floor for unbiased attackers beside
    the best attack's MSE. Points left of the accuracy line and under both limits pass."""
    runs = [(tag, run) for tag, run in state.get("runs", {}).items() if run["points"]]
    if not runs:
        return
    fig_, axes = plt.subplots(len(runs), 3, figsize=(16, 3.8 * len(runs)), squeeze=False)
    for row, (_tag, run) in zip(axes, runs, strict=True):
        for i, p in enumerate(run["points"].values()):
            colour = f"C{i % 10}"
            cost = 100 * (p["base_accuracy"] - p["task_accuracy"])
            for ax, metric in ((row[0], "reid"), (row[1], "ssim")):
                best = strongest(p["served_cut"], metric)
                if best is None:
                    continue
                cell = best[1]
                v, (lo, hi) = cell["value"], cell["interval"]
                ax.errorbar([cost], [v], yerr=[[v - lo], [hi - v]], fmt="o", capsize=3,
                            color=colour, label=label(p) if metric == "reid" else None)
                ax.plot([cost - 0.3, cost + 0.3], [cell["limit"]] * 2, color=colour, lw=2,
                        alpha=0.5)
            mse = min(r["mse"]["value"] for r in p["served_cut"]["attacks"].values() if "mse" in r)
            floor = (p["served_cut"]["certified"] or {}).get("mse_floor")
            row[2].plot([cost], [mse], "o", color=colour)
            if floor:
                row[2].plot([cost], [floor], "^", color=colour)
        name = f"{run['arch']}, task {run['task']} (undefended {100 * run['base_accuracy']:.1f} %)"
        row[0].set_title(f"{name}\nstrongest re-identification (limit 0.20, chance 0.10)",
                         fontsize=9)  # fmt: skip
        row[0].axhline(0.2, color="tab:red", lw=0.8)
        row[0].axhline(0.1, color="grey", ls=":", lw=0.8)
        row[0].legend(fontsize=6, loc="upper right")
        row[1].set_title("strongest SSIM (bar: that point's limit)", fontsize=9)
        row[2].set_title("per-pixel MSE: best attack (o, empirical),\nfloor for unbiased "
                         "attackers (^, certified)", fontsize=9)  # fmt: skip
        row[2].set_yscale("log")
        for ax in row:
            ax.axvline(0, color="grey", lw=0.8)
            ax.set_xlabel("accuracy cost (points below the undefended model)")
    fig_.tight_layout()
    fig_.savefig(path, dpi=100)
    plt.close(fig_)


def report(state: dict) -> None:
    lines = ["# Defences against every default and adaptive attack (CPU)", "",
             f"machine: {machine()}", "",
             "Every defended checkpoint is audited by fresh attackers trained from scratch on "
             "its frozen head: the default attacks (decoder, whitebox, prior, attribute) plus "
             "every attack that knows the defence (for noise and bottleneck: denoiser and "
             "prior-decoder; whitebox and prior invert the noiseless head against the noisy "
             f"features). Fixed step budgets: {STEPS}. Figures: mean over victims (95 % "
             "bootstrap interval). *Empirical* figures are the attacks'; the *certified* floor "
             "is the Fisher-information bound (1/dFIL) on the per-pixel MSE of any unbiased "
             "reconstruction, on the same victims.", ""]  # fmt: skip
    for tag, run in state.get("runs", {}).items():
        lines += [f"## {run['arch']}, task `{run['task']}` ({tag})", "",
                  f"Base checkpoint `{run['base']}`: test accuracy {run['base_accuracy']:.2%}.",
                  ""]  # fmt: skip
        for cut, s in run.get("undefended", {}).items():
            lines += [f"Undefended at `{cut}` ({'x'.join(map(str, s['shape']))}): "
                      f"{s['verdict']['status']}: {s['verdict']['short']}", "",
                      *attack_table(s), ""]  # fmt: skip
        lines += ["| point | crosses | task acc (cost) | best SSIM | best re-id | certified MSE "
                  "floor | best attack MSE | verdict | audit selects |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for pid, p in run["points"].items():
            s = p["served_cut"]
            ss, rr = strongest(s, "ssim"), strongest(s, "reid")
            mse = min((r["mse"]["value"], a) for a, r in s["attacks"].items() if "mse" in r)
            cert = s["certified"]
            cost = 100 * (p["base_accuracy"] - p["task_accuracy"])
            lines.append(
                f"| {pid} (sigma {p['record'].get('sigma') or p['params'].get('sigma')}) | "
                f"{s['cut']} {'x'.join(map(str, s['shape']))} | {p['task_accuracy']:.2%} "
                f"({cost:+.1f} pts) | {fig(ss[1]) if ss else '-'} {ss[0] if ss else ''} | "
                f"{fig(rr[1], 2) if rr else '-'} {rr[0] if rr else ''} | "
                f"{'-' if not cert else format(cert['mse_floor'], '.4f')} | "
                f"{mse[0]:.4f} ({mse[1]}) | {s['verdict']['status']}: {s['verdict']['short']} | "
                f"{p['selected'] or 'keep the whole model trusted'} |"
            )
        for pid, p in run["points"].items():
            lines += ["", f"### {pid}", "", p["summary"], "", *attack_table(p["served_cut"])]
            if p["served_cut"]["certified"]:
                c = p["served_cut"]["certified"]
                lines += ["", f"Certified ({c['covers']}): MSE >= {c['mse_floor']:.4f} (least "
                          f"protected victim {c['mse_floor_worst']:.4f}), PSNR <= "
                          f"{c['psnr_ceiling_db']:.1f} dB; dFIL {c['dfil']:.3g} ({c['method']}, "
                          f"{c['victims']} victims)."]  # fmt: skip
            lines += ["", f"Defence training {p['defence_seconds'] / 60:.1f} min, audit "
                      f"{p['audit_seconds'] / 60:.1f} min."]  # fmt: skip
        lines.append("")
    plot(state, RESULTS / "defence.png")
    lines += ["![privacy/accuracy curve](defence.png)", ""]
    lines += state.get("notes", [])
    write("defence", state, "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", help="the undefended checkpoint")
    ap.add_argument("--points", nargs="*", default=[], help="METHOD@CUT:k=v,k=v")
    ap.add_argument("--tag", default="class", help="name of this base's section")
    ap.add_argument("--work", default="runs/bench-defence2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget-scale", type=float, default=1.0)
    ap.add_argument("--report", action="store_true", help="only write the report")
    args = ap.parse_args()
    state = json.loads(STATE.read_text()) if STATE.is_file() else {}
    state = state if "runs" in state else {"runs": {}}
    if not args.report:
        use_step_budgets(args.budget_scale)
        measure(args, state)
    report(state)


if __name__ == "__main__":
    main()
