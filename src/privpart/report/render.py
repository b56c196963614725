"""Render OUT/index.html (Jinja2) and its figures from results.json alone: a self-contained
folder that needs no network to view."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from privpart.audit.results import AuditResult
from privpart.report.plots import latency_plot, leakage_plot, pareto_plot


def _filesize(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _headline(res: dict) -> str:
    m = res.get("metrics", {})
    if "ssim" in m:
        return f"SSIM {m['ssim']:.2f} / {m.get('psnr', float('nan')):.1f} dB"
    if "accuracy" in m:
        return f"acc {m['accuracy']:.2f}"
    if "feature_mae" in m:
        return f"MAE {m['feature_mae']:.3f}"
    return "–"


def _baselines(r: AuditResult) -> dict[str, str]:
    out: dict[str, str] = {}
    for cr in r.cuts:
        for name, res in cr.attacks.items():
            if name in out:
                continue
            b = res.get("baselines", {})
            out[name] = ", ".join(
                f"{k} {v:.3g}" for k, v in b.items() if isinstance(v, float | int)
            )
    return out


def _thresholds(r: AuditResult) -> str:
    c = r.selection["constraints"]
    return (
        f"SSIM > max({c['max_ssim']}, max(baseline, task-label floor) + {c['ssim_margin']}); "
        f"attribute accuracy > max(baseline, task-label floor) + "
        f"{c['max_attribute_advantage']}; feature MAE < {c['max_mae_ratio']} x "
        f"baseline; head memory <= {c['memory_budget_bytes'] / 2**20:.0f} MiB"
    )


def _feature_tables(r: AuditResult, top: int = 8) -> list[tuple[str, list[dict]]]:
    tables = []
    for cr in r.cuts:
        best = None
        for res in cr.attacks.values():
            pf = res.get("per_feature")
            if pf and (
                best is None or res["metrics"]["feature_mae"] < best["metrics"]["feature_mae"]
            ):
                best = res
        if best is None:
            continue
        base = best.get("baselines", {}).get("per_feature", {})
        rows = [
            {
                "name": k,
                "mae": v,
                "base": base.get(k, float("nan")),
                "ratio": v / base[k] if base.get(k) else float("nan"),
            }
            for k, v in best["per_feature"].items()
        ]
        rows.sort(key=lambda f: f["ratio"] if f["ratio"] == f["ratio"] else 9e9)
        tables.append((f"{cr.name} ({best['attack']})", rows[:top]))
    return tables


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
    grid_attacks = [
        a for a in r.config["attacks"] if any(cr.attacks.get(a, {}).get("grid") for cr in r.cuts)
    ]
    html = env.get_template("index.html").render(
        r=r,
        figs=figs,
        baselines=_baselines(r),
        thresholds=_thresholds(r),
        grid_attacks=grid_attacks,
        feature_tables=_feature_tables(r),
    )
    page = out / "index.html"
    page.write_text(html)
    return page
