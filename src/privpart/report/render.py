"""Render OUT/index.html (Jinja2) and its figures from results.json alone: a self-contained
folder that needs no network to view. Tables and panels follow the metric declarations the
results carry, so a new attack with a new metric renders without a change here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from privpart.attacks.result import AttackResult, MetricResult
from privpart.attacks.threat import ThreatModel
from privpart.auditing.results import AuditResult
from privpart.report.plots import judged_metrics, latency_plot, leakage_plot, pareto_plot
from privpart.selection import Breach, judge


def _filesize(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def figure(m: MetricResult) -> str:
    """`0.83 (0.81-0.85)`: a figure with its 95 % interval."""
    f = m.spec.fmt
    iv = m.estimate.interval
    if m.value != m.value:
        return "n/a"
    return f"{m.value:{f}}" + (f" ({iv.low:{f}}-{iv.high:{f}})" if iv else "")


def judged_figures(res: AttackResult) -> list[str]:
    """`SSIM 0.83 (0.81-0.85)` for each metric the result is judged by (else its first)."""
    shown = [m for m in res.metrics.values() if m.spec.judged] or list(res.metrics.values())[:1]
    return [f"{m.spec.label} {figure(m)}" for m in shown]


def _headline(res: AttackResult) -> str:
    return "; ".join(judged_figures(res)) or "–"


@dataclass(frozen=True)
class MetricRow:
    """One line of the detailed leakage table."""

    cut: str
    attack: str
    label: str
    figure: str
    baselines: str
    limit: str
    status: str  # broken | borderline | passes | reported


def _status(found: Breach | None) -> str:
    if found is None:
        return "passes"
    if found.passed:
        return "passes (borderline)"
    return "broken (borderline)" if found.borderline else "broken"


def metric_rows(r: AuditResult) -> list[MetricRow]:
    rows = []
    c = r.config.constraints
    for cr in r.cuts:
        runs = [(res, res.attack) for res in cr.attacks.values()]
        runs += [(res, f"{res.attack} (--confirm, seed {res.config.get('seed')})")
                 for res in cr.confirmations.values()]  # fmt: skip
        for res, who in runs:
            for m in res.metrics.values():
                f = m.spec.fmt
                base = ", ".join(f"{b.label} {m.baselines[b.name]:{f}}" for b in m.spec.baselines
                                 if b.name in m.baselines)  # fmt: skip
                rule = c.rule(m.spec)
                limit, status = "–", "reported"
                if rule is not None:
                    lim = rule.limit(m.spec, m.baselines)
                    limit = f"{lim.value:{f}}" + (f" ({lim.reference})" if lim.reference else "")
                    status = _status(judge(res, m, c))
                rows.append(MetricRow(cr.name, who, m.spec.label, figure(m), base, limit, status))
    return rows


def _thresholds(r: AuditResult) -> list[str]:
    c = r.config.constraints
    out = [rule.describe(spec) for spec in judged_metrics(r).values()
           if (rule := c.rule(spec)) is not None]  # fmt: skip
    out.append(f"head memory <= {c.memory_budget_bytes / 2**20:.0f} MiB"
               + ("" if c.enforce_memory else " (not enforced)"))  # fmt: skip
    return out


def _threat_models(r: AuditResult) -> list[tuple[str, list[str], str]]:
    """(threat model, its attacks, what the attacker holds) for the attacks that ran."""
    by: dict[ThreatModel, list[str]] = {}
    for cr in r.cuts:
        for res in cr.attacks.values():
            names = by.setdefault(res.threat_model, [])
            if res.attack not in names:
                names.append(res.attack)
    return [(tm.value, names, tm.summary) for tm, names in by.items()]


def _feature_tables(r: AuditResult, top: int = 8) -> list[tuple[str, list[dict]]]:
    tables = []
    for cr in r.cuts:
        best = None
        for res in cr.attacks.values():
            mae = res.metrics.get("feature_mae")
            if (
                res.per_feature
                and mae is not None
                and (best is None or mae.value < best.metrics["feature_mae"].value)
            ):
                best = res
        if best is None:
            continue
        base = best.config.get("baseline_per_feature", {}) or {}
        rows = [
            {
                "name": k,
                "mae": v,
                "base": base.get(k, float("nan")),
                "ratio": v / base[k] if base.get(k) else float("nan"),
            }
            for k, v in (best.per_feature or {}).items()
        ]
        rows.sort(key=lambda f: f["ratio"] if f["ratio"] == f["ratio"] else 9e9)
        tables.append((f"{cr.name} ({best.attack})", rows[:top]))
    return tables


def _best_mse(r: AuditResult) -> dict[str, str]:
    """Per certified cut, the lowest MSE any attack reached (empirical), to set beside the
    certified floor."""
    out = {}
    for cr in r.cuts:
        if cr.certified is None:
            continue
        runs = [(res.metrics["mse"].value, res.attack) for res in cr.attacks.values()
                if "mse" in res.metrics]  # fmt: skip
        if runs:
            value, who = min(runs)
            where = "below" if value < cr.certified.mse_floor else "above"
            out[cr.name] = f"{value:.4f} ({who}; {where} the floor)"
        else:
            out[cr.name] = "–"
    return out


def render_report(results_json: Path, out: Path | None = None) -> Path:
    """Write index.html + PNG figures next to results.json (or into `out`); returns the page."""
    r = AuditResult.load(results_json)
    out = out or results_json.parent
    out.mkdir(parents=True, exist_ok=True)
    figs = {
        "leakage": leakage_plot(r, out),
        "latency": latency_plot(r, out),
        "pareto": pareto_plot(r, out),
    }
    env = Environment(loader=PackageLoader("privpart.report"), autoescape=select_autoescape())
    env.filters["filesize"] = _filesize
    env.filters["headline"] = _headline
    env.filters["figures"] = judged_figures
    grid_attacks = [a for a in r.config.attacks
                    if any(a in cr.attacks and cr.attacks[a].grid for cr in r.cuts)]  # fmt: skip
    skipped = {a: why for cr in r.cuts for a, why in cr.skipped.items()}
    html = env.get_template("index.html").render(
        r=r,
        figs=figs,
        thresholds=_thresholds(r),
        threat_models=_threat_models(r),
        grid_attacks=grid_attacks,
        feature_tables=_feature_tables(r),
        metric_rows=metric_rows(r),
        skipped=skipped,
        whole=r.verdicts.get("whole model trusted"),
        ran=[a for a in r.config.attacks if a not in skipped],
        certified=any(cr.certified for cr in r.cuts),
        certified_victims=max((cr.certified.victims for cr in r.cuts if cr.certified), default=0),
        best_mse=_best_mse(r),
    )
    page = out / "index.html"
    page.write_text(html)
    return page
