"""Report figures, drawn from the typed audit result only (matplotlib, no display needed).

Every panel is driven by the metric declarations the results carry: one leakage panel per
judged metric (SSIM, re-identification, attribute accuracy, a new attack's own metric...), each
with its attacks' figures and 95 % intervals, its baselines and its limit.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from privpart.auditing.results import AuditResult  # noqa: E402
from privpart.metrics.spec import Direction, MetricSpec  # noqa: E402
from privpart.selection import CutEvidence, leakage_score  # noqa: E402

# attacks: tab10 without its red, which marks limits; baselines: greys, one line style each
PALETTE = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 3]
BASELINE_STYLES = [("#444444", "--"), ("#888888", "-."), ("#aaaaaa", ":"), ("#666666", (0, (1, 3)))]


def attack_colors(r: AuditResult) -> dict[str, tuple]:
    """A stable colour per attack, in the audit's attack order."""
    return {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(r.config.attacks)}


def judged_metrics(r: AuditResult) -> dict[str, MetricSpec]:
    """Every metric some result is judged by, in first-seen order."""
    out: dict[str, MetricSpec] = {}
    for cr in r.cuts:
        for res in cr.attacks.values():
            for name, m in res.metrics.items():
                if name not in out and r.config.constraints.rule(m.spec) is not None:
                    out[name] = m.spec
    return out


def _save(fig: plt.Figure, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _metric_panel(ax: plt.Axes, r: AuditResult, name: str, spec: MetricSpec) -> None:
    colors = attack_colors(r)
    names = [cr.name for cr in r.cuts]
    x = list(range(len(names)))
    rule = r.config.constraints.rule(spec)
    shown_base: list[str] = []
    limit_drawn = False
    for attack in r.config.attacks:
        ys, lo, hi = [], [], []
        for cr in r.cuts:
            m = cr.attacks.get(attack)
            m = m.metrics.get(name) if m is not None else None
            iv = m.estimate.interval if m is not None else None
            ys.append(m.value if m is not None else float("nan"))
            lo.append(m.value - iv.low if iv else 0.0)
            hi.append(iv.high - m.value if iv else 0.0)
        if all(y != y for y in ys):
            continue
        ax.errorbar(x, ys, yerr=[lo, hi], fmt="o-", capsize=3, label=attack,
                    color=colors.get(attack))  # fmt: skip
        first = next(cr.attacks[attack].metrics[name] for cr in r.cuts
                     if attack in cr.attacks and name in cr.attacks[attack].metrics)  # fmt: skip
        for b in spec.baselines:
            if b.name in first.baselines and b.name not in shown_base:
                color, style = BASELINE_STYLES[len(shown_base) % len(BASELINE_STYLES)]
                shown_base.append(b.name)
                label = b.label if b.judged else f"{b.label} (not judged)"
                ax.axhline(first.baselines[b.name], color=color, ls=style, lw=1.2, label=label)
        if rule is not None and not limit_drawn:
            limit_drawn = True
            ax.axhline(rule.limit(spec, first.baselines).value, color="#d62728", ls=":", lw=1.6,
                       label="limit")  # fmt: skip
    leak = "higher = more leakage" if spec.direction is Direction.HIGHER else "lower = more leakage"
    ax.set_title(f"{spec.label} ({leak})", fontsize=10)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def leakage_plot(r: AuditResult, out: Path) -> str:
    """One panel per judged metric: figure per attack with its interval, baselines, limit."""
    metrics = judged_metrics(r)
    n = max(len(metrics), 1)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4), squeeze=False)
    for ax, (name, spec) in zip(axes[0], metrics.items(), strict=False):
        _metric_panel(ax, r, name, spec)
    if not metrics:
        axes[0][0].set_title("no judged metric")
    return _save(fig, out / "leakage.png")


def latency_plot(r: AuditResult, out: Path) -> str:
    """Stacked head / transfer / tail latency per cut, with both extremes as lines."""
    names = [cr.name for cr in r.cuts]
    head = [cr.latency.head_ms for cr in r.cuts]
    xfer = [cr.latency.transfer_ms for cr in r.cuts]
    tail = [cr.latency.tail.median_ms for cr in r.cuts]
    fig, ax = plt.subplots(figsize=(12, 4))
    x = range(len(names))
    ax.bar(x, head, label="head (trusted)", color="#ff7f0e")
    ax.bar(x, xfer, bottom=head, label="feature transfer", color="#7f7f7f")
    ax.bar(x, tail, bottom=[h + t for h, t in zip(head, xfer, strict=True)],
           label="tail (accelerator)", color="#1f77b4")  # fmt: skip
    wt, wu = r.extremes["whole_trusted"], r.extremes["whole_untrusted"]
    ax.axhline(wt.total_ms, color="#ff7f0e", ls="--",
               label=f"whole model trusted ({wt.total_ms:.1f} ms)")  # fmt: skip
    ax.axhline(wu.total_ms, color="#1f77b4", ls="--",
               label=f"whole model untrusted ({wu.total_ms:.1f} ms, input exposed)")  # fmt: skip
    ax.set_xticks(list(x), names, rotation=30, ha="right")
    ax.set_ylabel("ms per inference (median)")
    ax.set_title("End-to-end latency by cut")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, out / "latency.png")


def pareto_plot(r: AuditResult, out: Path) -> str:
    """Privacy vs latency: the most revealing figure's distance past its limit, per cut."""
    fig, ax = plt.subplots(figsize=(7, 5))
    c = r.config.constraints
    pts = []
    for cr in r.cuts:
        ev = CutEvidence(cr.name, cr.latency.total_ms, 0, cr.attacks)
        pts.append((cr.latency.total_ms, leakage_score(ev, c), cr.name, cr.verdict.status.value))
    colors = {"selected": "#2ca02c", "passes": "#1f77b4", "rejected": "#d62728"}
    for lat, leak, name, status in pts:
        ax.scatter(lat, leak, s=160 if status == "selected" else 50, c=colors[status],
                   marker="*" if status == "selected" else "o", zorder=3)  # fmt: skip
        ax.annotate(name, (lat, leak), textcoords="offset points", xytext=(5, 5), fontsize=8)
    frontier, best = [], float("inf")
    for lat, leak, *_ in sorted(pts):
        if leak < best:
            frontier.append((lat, leak))
            best = leak
    if frontier:
        ax.plot(*zip(*frontier, strict=True), color="grey", ls="--", lw=1, label="Pareto front")
    ax.axhline(0.0, color="red", ls=":", lw=1, label="limit (above: broken)")
    ax.axvline(r.extremes["whole_trusted"].total_ms, color="#ff7f0e", ls=":",
               label="whole model trusted")  # fmt: skip
    ax.set_xlabel("end-to-end latency (ms)")
    ax.set_ylabel("worst figure past its limit (metric units)")
    ax.set_title("Privacy-latency trade-off (star = chosen cut)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "pareto.png")
