"""(Kept for the history in bench/results/defence_adversarial.md; bench/defence.py is the
current defence benchmark.)

Adversarial defence on VGG-16 / Fashion-MNIST (2 CPU cores): the accuracy-leakage trade-off
at a cut the undefended audit rejects, and whether the audit then selects an earlier cut.

Setup (a sound private attribute): the server's task is the coarse `group` (tops / bottoms /
footwear / bags), the private attribute is the fine `class` within it. The server learns the
group from the output anyway, so the attribute attack is read against two baselines: the
majority class (what the audit's default threshold uses) and the *task floor* (the accuracy of
guessing the class from the group alone); the audit's attribute threshold is the larger of the
two + 0.1, reconstruction thresholds are the audit's defaults (SSIM <= max(0.4, baseline + 0.1)).

Steps, each cached under --work so the bench resumes where it stopped:
  base        train VGG-16 on `group` (12,000 samples, 1 epoch; the audit's defaults)
  undefended  audit it on the five default block-boundary cuts (all four attacks)
  sweep       per (alpha, beta) in --grid: `privpart audit --defence adversarial` at --cut only
  select      for the best grid point: audit the defended model on the default cuts up to the
              undefended selection, compare selected cuts and latency
  report      bench/results/defence.{json,md,png}

Run: .venv/bin/python bench/defence.py [--step all|base|undefended|sweep|select|report]
     [--grid 1:1,4:4] [--cut features.9] [--budget-scale 1.0]
One grid point alone: --step sweep --grid 4:4.
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
from privpart.data import load_dataset, splits_from_meta  # noqa: E402
from privpart.metrics import majority_class, task_floor_baseline  # noqa: E402
from privpart.selection import Constraints  # noqa: E402
from privpart.training import read_meta, train_to_checkpoint  # noqa: E402

ATTACKS = list(DEFAULT_ATTACKS)  # + the attacks that know the defence (the audit adds them)
# Fixed per-attack step budgets (at least what the audit's default time budgets bought on an
# idle 2-core machine at features.9): on a shared machine time budgets buy fewer steps under
# load, which would make defended and undefended audits incomparable. --budget time restores
# the audit's own time budgets. whitebox / prior: steps of each phase (tuning and inversion).
STEPS = {"cgan": 400, "decoder": 500, "whitebox": 200, "attribute": 1000, "prior": 200,
         "denoiser": 300, "prior-decoder": 300, "fora": 300}  # fmt: skip
DEFAULT_GRID = "1:1,4:4"


def use_step_budgets(scale: float) -> None:
    """Make every Auditor in this process give each attack exactly STEPS[attack] * scale steps."""

    def budget(name: str, _scale: float, _steps: int | None = None) -> Budget:
        return Budget(steps=max(1, round(STEPS[name] * scale)))

    schedule.attack_budget = budget


def parse_grid(text: str) -> list[tuple[float, float]]:
    out = []
    for item in text.split(","):
        a, _, b = item.partition(":")
        out.append((float(a), float(b or a)))
    return out


def task_floor(base: Path) -> dict[str, float]:
    """Class accuracy from the group alone (the audit's task-label floor) and the majority class,
    fitted on aux and scored on the victims."""
    meta = read_meta(base)
    ds = load_dataset(meta["dataset_spec"]).with_task(meta["task"])
    splits = splits_from_meta(ds, meta)
    cls, grp = ds.attributes["class"].values, ds.attributes["group"].values
    aux, victim = splits.aux, splits.victim
    return {
        "task_floor": task_floor_baseline(grp[aux], cls[aux], grp[victim], cls[victim]),
        "majority": float((cls[victim] == majority_class(cls[aux], 10)).float().mean()),
    }


def audit_cfg(args: argparse.Namespace, base: Path, cuts: str, **kw) -> AuditConfig:  # noqa: ANN003
    return AuditConfig(
        checkpoint=str(base),
        cuts=cuts,
        attacks=list(ATTACKS),
        attribute="class",
        budget_scale=args.budget_scale,
        **kw,
    )


def steps(config: dict) -> int | None:
    """Steps an attack actually ran (time budgets buy fewer on a loaded machine)."""
    for key in ("fit", "inversion", "latent", "decoder", "inverse"):
        if isinstance(config.get(key), dict) and "steps" in config[key]:
            return config[key]["steps"]
    return None


def summarise(r: AuditResult) -> dict:
    cuts = {}
    constraints = r.config.constraints
    for c in r.cuts:
        ssim = {a: v.ssim for a, v in c.attacks.items() if "ssim" in v.metrics}
        reid = {a: v.reid for a, v in c.attacks.items() if "reid" in v.metrics}
        spec = next((v.metric("ssim") for v in c.attacks.values() if "ssim" in v.metrics), None)
        attr = c.attacks.get("attribute")
        acc = attr.metric("accuracy") if attr is not None else None
        best = max(ssim, key=ssim.get) if ssim else None
        rule = constraints.rule(spec.spec) if spec is not None else None
        cuts[c.name] = {
            "ssim": ssim,
            "reid": reid,
            "best_attack": best,
            "best_ssim": ssim[best] if best else None,
            "best_reid_attack": max(reid, key=reid.get) if reid else None,
            "best_reid": max(reid.values()) if reid else None,
            "reid_chance": next((v.metric("reid").baselines.get("chance")
                                 for v in c.attacks.values() if "reid" in v.metrics), None),
            "ssim_baseline": None if spec is None else spec.baselines.get("aux_mean"),
            "ssim_task_floor": None if spec is None else spec.baselines.get("task_floor"),
            "ssim_limit": None if rule is None else rule.limit(spec.spec, spec.baselines).value,
            "attribute_accuracy": None if acc is None else acc.value,
            "attribute_majority": None if acc is None else acc.baselines.get("majority"),
            "attack_steps": {a: steps(v.config) for a, v in c.attacks.items()},
            "total_ms": c.latency.total_ms,
            "head_ms": c.latency.head_ms,
        "verdict": {"status": c.verdict.status.value, "reason": c.verdict.text},
        }
    return {
        "selected_cut": r.selected_cut,
        "summary": r.selection.summary,
        "test_accuracy": r.model["test_accuracy"],
        "whole_trusted_ms": r.extremes["whole_trusted"].total_ms,
        "defence": r.defence,
        "stage_seconds": r.stage_seconds,
        "cuts": cuts,
    }


def step_base(args: argparse.Namespace) -> Path:
    base = args.work / "base"
    if not (base / "meta.json").is_file():
        train_to_checkpoint("vgg16", "fashion-mnist", base, train_limit=12000, epochs=1,
                            task="group", n_aux=2000, n_victim=256)  # fmt: skip
    return base


def step_undefended(args: argparse.Namespace, base: Path, cons: Constraints) -> dict:
    cfg = audit_cfg(args, base, args.undefended_cuts, constraints=cons)
    r = Auditor(cfg, args.work / "undefended").run()
    return summarise(r)


# Grid values per method: "a:b" -> defence parameters.
PARAMS = {
    "adversarial": lambda a, b: {"alpha": a, "beta": b, "private_attribute": "class"},
    "nopeek": lambda a, b: {"alpha": a},
    "noise": lambda a, b: {"sigma": a},
}
NAMES = {"adversarial": "a{a:g}-b{b:g}", "nopeek": "a{a:g}", "noise": "s{a:g}"}


def point_key(cut: str, method: str, a: float, b: float, lr: float | None, epochs: int = 1) -> str:
    return (f"{cut}|{method}|{a:g}:{b:g}" + (f"|lr{lr:g}" if lr else "")
            + (f"|e{epochs}" if epochs != 1 else ""))  # fmt: skip


def step_point(args: argparse.Namespace, base: Path, cut: str, method: str, a: float, b: float,
               cons: Constraints, cuts: str | None = None) -> dict:  # fmt: skip
    params = PARAMS[method](a, b)
    if args.lr:
        params["lr"] = args.lr
    if args.epochs != 1:
        params["epochs"] = args.epochs
    cfg = audit_cfg(args, base, cuts or cut, constraints=cons, defence=method,
                    defence_cut=cut, defence_params=params)  # fmt: skip
    name = f"{method}-" + NAMES[method].format(a=a, b=b) + (f"-lr{args.lr:g}" if args.lr else "")
    name += f"-e{args.epochs}" if args.epochs != 1 else ""
    t = time.perf_counter()
    r = Auditor(cfg, args.work / name).run()
    seconds = time.perf_counter() - t
    return {"method": method, "alpha": a, "beta": b, "lr": args.lr, "params": params,
            "wall_seconds": seconds, **summarise(r)}  # fmt: skip


def passes(point: dict, cut: str) -> bool:
    return point["cuts"][cut]["verdict"]["status"] != "rejected"


def label(p: dict) -> str:
    method = p.get("method", "adversarial")
    values = {"adversarial": f"a={p['alpha']:g} b={p['beta']:g}", "nopeek": f"a={p['alpha']:g}",
              "noise": f"sigma={p['alpha']:g}"}[method]  # fmt: skip
    epochs = p.get("params", {}).get("epochs", 1)
    return (f"{method} {values}" + (f" lr={p['lr']:g}" if p.get("lr") else "")
            + (f" epochs={epochs}" if epochs != 1 else ""))  # fmt: skip


def cut_of(p: dict) -> str:
    return p["defence"]["cut"] if p.get("defence") else next(iter(p["cuts"]))


def plot(points: list[dict], floor: dict, undefended: dict, path: Path) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    cuts = list(dict.fromkeys(cut_of(p) for p in points))
    for i, cut in enumerate(cuts):
        und = undefended["cuts"].get(cut)
        rows = [("undefended", undefended["test_accuracy"], und, "x")] if und else []
        rows += [(label(p), p["test_accuracy"], p["cuts"][cut], "o") for p in points
                 if cut_of(p) == cut]  # fmt: skip
        for j, (name, acc, c, marker) in enumerate(rows):
            kw = {"color": f"C{i}", "marker": marker, "label": cut if j == 0 else None}
            ax1.scatter(acc, c["best_ssim"], **kw)
            ax1.annotate(name, (acc, c["best_ssim"]), fontsize=7)
            ax2.scatter(acc, c["attribute_accuracy"], **kw)
            ax2.annotate(name, (acc, c["attribute_accuracy"]), fontsize=7)
    limit = next(c["ssim_limit"] for c in undefended["cuts"].values())
    ax1.axhline(limit, ls="--", color="red", label="audit SSIM limit")
    ax2.axhline(floor["task_floor"] + 0.1, ls="--", color="red", label="audit limit")
    ax2.axhline(floor["task_floor"], ls="--", color="green", label="task floor (group only)")
    ax2.axhline(floor["majority"], ls=":", color="grey", label="majority class")
    ax1.set(xlabel="task (group) accuracy", ylabel="best attack SSIM at the cut",
            title="input reconstruction (x undefended)")  # fmt: skip
    ax2.set(xlabel="task (group) accuracy", ylabel="class inference accuracy",
            title="private attribute (class)")  # fmt: skip
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def reid_cell(c: dict) -> str:
    if c.get("best_reid") is None:
        return "-"
    return f"{c['best_reid']:.2f} ({c['best_reid_attack']}; {c['reid_chance']:.2f})"


def report(args: argparse.Namespace, data: dict) -> None:
    floor, und = data["floor"], data["undefended"]
    any_cut = next(iter(und["cuts"].values()))
    lines = [
        "# Adversarial defence on VGG-16 / Fashion-MNIST (CPU)",
        "",
        f"machine: {machine()}; task `group`, private attribute `class`; attacks "
        f"{', '.join(ATTACKS)}, "
        + (
            f"fixed steps {STEPS} x {args.budget_scale:g}"
            if args.budget == "steps"
            else f"time budgets x {args.budget_scale:g}"
        )
        + ". Fresh attackers, trained from scratch on the frozen defended head.",  # fmt: skip
        "",
        f"Class from the group alone (task floor): {floor['task_floor']:.2f}; majority class "
        f"{floor['majority']:.2f}; attribute limit {floor['task_floor'] + 0.1:.2f}. "
        f"Reconstruction limit: SSIM <= {any_cut['ssim_limit']:.2f} (aux-mean image "
        f"{any_cut['ssim_baseline']:.2f}; group-mean image, the task-label floor, "
        f"{any_cut.get('ssim_task_floor') or 0:.2f}; limit = max(0.4, larger + 0.1)).",
        "",
        f"Undefended: task accuracy {und['test_accuracy']:.3f}; {und['summary']}",
        "",
        "| cut | best attack SSIM | best re-identification (chance) | attribute acc "
        "| end-to-end ms | verdict |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, c in und["cuts"].items():
        lines.append(
            f"| {name} | {c['best_ssim']:.3f} ({c['best_attack']}) | {reid_cell(c)} | "
            f"{c['attribute_accuracy']:.3f} | {c['total_ms']:.2f} | {c['verdict']['status']} |"
        )
    lines += [
        "",
        "## Defended models (each audited at its defended cut against keeping it all trusted)",
        "",
        "| cut | defence | task acc | best attack SSIM | best re-identification (chance) "
        "| attribute acc | attacks | verdict | audit selects | defence min |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in data["points"]:
        cut = cut_of(p)
        c = p["cuts"][cut]
        mins = (p["stage_seconds"].get("defence") or 0) / 60
        lines.append(
            f"| {cut} | {label(p)} | {p['test_accuracy']:.3f} | "
            f"{c['best_ssim']:.3f} ({c['best_attack']}) | {reid_cell(c)} | "
            f"{c['attribute_accuracy']:.3f} | {', '.join(c['ssim'])} | "
            f"{c['verdict']['status']}: {c['verdict']['reason']} | {p['summary']} | {mins:.1f} |"
        )
    sel = data.get("selection")
    if sel:
        lines += [
            "",
            "## Selection over the default cuts",
            "",
            f"undefended: {und['summary']}",
            f"defended ({label(sel)}): {sel['summary']}",
            "",
            f"earlier cut selected: {sel['earlier']}; latency {sel['undefended_ms']:.2f} ms -> "
            f"{sel['defended_ms']:.2f} ms ({sel['gain']:+.1%} faster end to end)",
        ]
    write("defence_adversarial", data, "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--step", default="all",
                    choices=["all", "base", "undefended", "sweep", "select", "report"])  # fmt: skip
    ap.add_argument("--method", default="adversarial", choices=sorted(PARAMS))
    ap.add_argument("--grid", default=DEFAULT_GRID,
                    help="adversarial a:b,...; nopeek alpha,...; noise sigma,...")  # fmt: skip
    ap.add_argument("--cut", default="features.9", help="a cut the undefended audit rejects")
    ap.add_argument("--budget", choices=["steps", "time"], default="steps",
                    help="fixed per-attack steps (STEPS) or the audit's time budgets")  # fmt: skip
    ap.add_argument("--budget-scale", type=float, default=1.0)
    ap.add_argument("--undefended-cuts", default="default")
    ap.add_argument("--lr", type=float, default=None, help="defence learning rate")
    ap.add_argument("--epochs", type=int, default=1, help="defence passes over its samples")
    ap.add_argument("--work", type=Path, default=Path("runs/bench-defence"))
    args = ap.parse_args()
    if args.budget == "steps":
        use_step_budgets(args.budget_scale)
    state_path = args.work / "bench.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {"points": {}}
    for key in [k for k in state["points"] if k.count("|") == 1 or "|lr" in k.split("|")[1]]:
        cut_name, rest = key.split("|", 1)  # keys from before --method: adversarial points
        state["points"][f"{cut_name}|adversarial|{rest}"] = state["points"].pop(key)
    todo = {"all": ["base", "undefended", "sweep", "select", "report"]}.get(args.step, [args.step])

    base = step_base(args) if "base" in todo else args.work / "base"
    floor = state.get("floor") or task_floor(base)
    cons = Constraints()  # the audit reads attributes against the task-label floor itself
    state["floor"] = floor
    if "undefended" in todo or "undefended" not in state:
        state["undefended"] = step_undefended(args, base, cons)
    cut = state["cut"] = args.cut
    if "sweep" in todo:
        for a, b in parse_grid(args.grid):
            key = point_key(cut, args.method, a, b, args.lr, args.epochs)
            point = step_point(args, base, cut, args.method, a, b, cons)
            old = state["points"].get(key, {}).get("stage_seconds", {})
            if "defence" not in point["stage_seconds"] and "defence" in old:
                point["stage_seconds"]["defence"] = old["defence"]  # re-audit of a cached model
            state["points"][key] = point
            state_path.write_text(json.dumps(state, indent=2))
    points = [p for k, p in state["points"].items() if k.startswith(f"{cut}|")]
    points.sort(key=lambda p: (p.get("method", "adversarial"), p["alpha"], p["beta"], p["lr"] or 0))
    if "select" in todo and points:
        ok = [p for p in points if passes(p, cut)]
        best = max(ok, key=lambda p: p["test_accuracy"]) if ok else None
        if best:
            names = list(state["undefended"]["cuts"])
            sel_u = state["undefended"]["selected_cut"]
            upto = names[: names.index(sel_u) + 1] if sel_u in names else names
            args.lr = best.get("lr")
            args.epochs = best.get("params", {}).get("epochs", 1)
            method = best.get("method", "adversarial")
            full = step_point(args, base, cut, method, best["alpha"], best["beta"], cons,
                              ",".join(upto))  # fmt: skip
            u_ms = (state["undefended"]["cuts"][sel_u]["total_ms"] if sel_u in names
                    else state["undefended"]["whole_trusted_ms"])  # fmt: skip
            d_sel = full["selected_cut"]
            d_ms = full["cuts"][d_sel]["total_ms"] if d_sel in full["cuts"] else u_ms
            order = {n: i for i, n in enumerate(names)}
            state["selection"] = {
                "method": method, "alpha": best["alpha"], "beta": best["beta"],
                "lr": best.get("lr"),
                "summary": full["summary"],
                "defended_selected": d_sel, "undefended_selected": sel_u,
                "earlier": order.get(d_sel, len(names)) < order.get(sel_u, len(names)),
                "undefended_ms": u_ms, "defended_ms": d_ms, "gain": 1 - d_ms / u_ms,
                "defended_cuts": full["cuts"],
            }  # fmt: skip
        else:
            state.pop("selection", None)
    state["machine"] = machine()
    state["grid"] = [f"{p['alpha']:g}:{p['beta']:g}" for p in points]
    args.work.mkdir(parents=True, exist_ok=True)
    state_path.write_text(json.dumps(state, indent=2))
    if "report" in todo and state["points"]:
        everything = list(state["points"].values())  # every defended cut, not just --cut
        order = {n: i for i, n in enumerate(state["undefended"]["cuts"])}
        everything.sort(key=lambda p: (order.get(cut_of(p), 99), label(p)))
        RESULTS.mkdir(parents=True, exist_ok=True)
        plot(everything, floor, state["undefended"], RESULTS / "defence_adversarial.png")
        report(args, {**state, "points": everything})


if __name__ == "__main__":
    main()
