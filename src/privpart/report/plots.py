"""Report figures, drawn from results.json data only (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from privpart.audit.results import AuditResult  # noqa: E402
from privpart.selection import Constraints, leakage_score  # noqa: E402
from privpart.selection.select import CutEvidence  # noqa: E402

COLORS = {"cgan": "#d62728", "decoder": "#1f77b4", "whitebox": "#9467bd", "attribute": "#2ca02c"}


def _save(fig: plt.Figure, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def leakage_plot(r: AuditResult, out: Path) -> str:
    """Leakage vs cut per attack, with the no-information baselines and the thresholds."""
    c = Constraints.from_dict(r.selection["constraints"])
    names = [cr.name for cr in r.cuts]
    x = range(len(names))
    recon = "feature_mae" if r.data["kind"] == "tabular" else "ssim"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    base_line = None
    for attack in r.config["attacks"]:
        ys = [cr.attacks.get(attack, {}).get("metrics", {}).get(recon) for cr in r.cuts]
        if any(y is not None for y in ys):
            ax.plot(
                x,
                [float("nan") if y is None else y for y in ys],
                "o-",
                label=attack,
                color=COLORS.get(attack),
            )
            bases = [
                cr.attacks[attack]["baselines"].get(recon) for cr in r.cuts if attack in cr.attacks
            ]
            base_line = base_line if base_line is not None else (bases[0] if bases else None)
    if base_line is not None:
        ax.axhline(base_line, color="grey", ls="--", label="baseline (aux-mean guess)")
        floors = [
            res["baselines"]["task_floor_ssim"]
            for cr in r.cuts
            for res in cr.attacks.values()
            if "task_floor_ssim" in res.get("baselines", {})
        ]
        if recon == "ssim" and floors:
            ax.axhline(floors[0], color="green", ls="--", label="task-label floor (label mean)")
        limit = (
            c.ssim_limit("", base_line, floors[0] if floors else 0.0)
            if recon == "ssim"
            else c.max_mae_ratio * base_line
        )
        ax.axhline(limit, color="red", ls=":", label="threshold")
    ax.set_title(
        "Input reconstruction" + (" (lower MAE = more leakage)" if recon != "ssim" else "")
    )
    ax.set_ylabel("SSIM on victims" if recon == "ssim" else "mean abs feature error")
    ax.set_xticks(list(x), names, rotation=30, ha="right")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    ax = axes[1]
    accs = [cr.attacks.get("attribute", {}).get("metrics", {}).get("accuracy") for cr in r.cuts]
    if any(a is not None for a in accs):
        bases = [
            cr.attacks["attribute"]["baselines"].get("accuracy", 0)
            for cr in r.cuts
            if "attribute" in cr.attacks
        ]
        ax.plot(
            x,
            [float("nan") if a is None else a for a in accs],
            "o-",
            color=COLORS["attribute"],
            label="attribute attack",
        )
        floors = [
            cr.attacks["attribute"]["baselines"].get("task_floor")
            for cr in r.cuts
            if "attribute" in cr.attacks
        ]
        ax.axhline(bases[0], color="grey", ls="--", label="majority-class baseline")
        base = bases[0]
        if floors and floors[0] is not None:
            ax.axhline(floors[0], color="green", ls="--", label="task-label floor")
            base = max(base, floors[0])
        ax.axhline(base + c.max_attribute_advantage, color="red", ls=":", label="threshold")
        attr = r.cuts[0].attacks.get("attribute", {}).get("config", {}).get("attribute", "")
        ax.set_title(f"Private attribute inference ({attr})" if attr else "Attribute inference")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8)
    else:
        ax.set_title("Attribute inference (not run)")
    ax.set_ylabel("accuracy on victims")
    ax.set_xticks(list(x), names, rotation=30, ha="right")
    ax.grid(alpha=0.3)
    return _save(fig, out / "leakage.png")


def latency_plot(r: AuditResult, out: Path) -> str:
    """Stacked head / transfer / tail latency per cut, with both extremes as lines."""
    names = [cr.name for cr in r.cuts]
    head = [cr.latency["head_ms"] for cr in r.cuts]
    xfer = [cr.latency["transfer_ms"] for cr in r.cuts]
    tail = [cr.latency["tail_ms"] for cr in r.cuts]
    fig, ax = plt.subplots(figsize=(12, 4))
    x = range(len(names))
    ax.bar(x, head, label="head (trusted)", color="#ff7f0e")
    ax.bar(x, xfer, bottom=head, label="feature transfer", color="#7f7f7f")
    ax.bar(
        x,
        tail,
        bottom=[h + t for h, t in zip(head, xfer, strict=True)],
        label="tail (accelerator)",
        color="#1f77b4",
    )
    wt, wu = r.extremes["whole_trusted"], r.extremes["whole_untrusted"]
    ax.axhline(
        wt["total_ms"],
        color="#ff7f0e",
        ls="--",
        label=f"whole model trusted ({wt['total_ms']:.1f} ms)",
    )
    ax.axhline(
        wu["total_ms"],
        color="#1f77b4",
        ls="--",
        label=f"whole model untrusted ({wu['total_ms']:.1f} ms, input exposed)",
    )
    ax.set_xticks(list(x), names, rotation=30, ha="right")
    ax.set_ylabel("ms per inference (median)")
    ax.set_title("End-to-end latency by cut")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, out / "latency.png")


def pareto_plot(r: AuditResult, out: Path) -> str:
    """Privacy vs latency: worst leakage over attacks against end-to-end latency per cut."""
    fig, ax = plt.subplots(figsize=(7, 5))
    pts = []
    for cr in r.cuts:
        ev = CutEvidence(cr.name, cr.latency["total_ms"], 0, cr.attacks)
        pts.append((cr.latency["total_ms"], leakage_score(ev), cr.name, cr.verdict["status"]))
    colors = {"selected": "#2ca02c", "passes": "#1f77b4", "rejected": "#d62728"}
    for lat, leak, name, status in pts:
        ax.scatter(
            lat,
            leak,
            s=160 if status == "selected" else 50,
            c=colors[status],
            marker="*" if status == "selected" else "o",
            zorder=3,
        )
        ax.annotate(name, (lat, leak), textcoords="offset points", xytext=(5, 5), fontsize=8)
    frontier, best = [], float("inf")
    for lat, leak, *_ in sorted(pts):
        if leak < best:
            frontier.append((lat, leak))
            best = leak
    if frontier:
        ax.plot(*zip(*frontier, strict=True), color="grey", ls="--", lw=1, label="Pareto front")
    wt = r.extremes["whole_trusted"]["total_ms"]
    ax.axvline(wt, color="#ff7f0e", ls=":", label="whole model trusted")
    ax.set_xlabel("end-to-end latency (ms)")
    ax.set_ylabel("worst leakage (max SSIM / accuracy gain / 1-MAE ratio)")
    ax.set_title("Privacy-latency trade-off (star = chosen cut)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "pareto.png")
