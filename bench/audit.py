"""The main job, timed as a user runs it.

Quick start (default): the README quick start (`privpart audit vgg16 --dataset fashion-mnist`,
training included, set-up excluded), then `--cuts all` on the model it trained, then exhaustive
search on the default cuts of the same model (agreement check).
`--checkpoint CKPT --cuts a,b,c`: the agreement check on a model where some cut passes (e.g. a
defended checkpoint): monotone and exhaustive search over the same cuts, selected cut, verdicts
and attack runs compared.

Each run is the CLI in a child process; its wall time and peak RSS (that child's own, from
wait4) are recorded with the stages the audit itself timed. The two parts are kept side by side
in bench/results/audit.json (running one part keeps the other's last figures, each with its own
machine, date and CPU steal). Target (issue: monotone cut search): the quick start within 5
minutes on 2 CPU cores; `--cuts all` within the old 5-cut audit's time.
Run: flock /tmp/privpart-cpu.lock .venv/bin/python bench/audit.py [--out runs/bench-audit]
     [--checkpoint CKPT --cuts a,b,c]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import RESULTS, cpu_ticks, machine, plural, run_child, steal_since, write
from privpart.auditing import AuditResult

CLI = [sys.executable, "-c", "from privpart.cli import app; app()", "audit"]


def run(name: str, out: Path, model: str, *extra: str) -> dict:
    """One CLI audit in a child process: wall minutes, peak RSS, and what it decided."""
    if out.exists():
        shutil.rmtree(out)
    args = [model, "--dataset", "fashion-mnist", "--out", str(out), *extra]
    child = run_child([*CLI, *args], env={**os.environ, "COLUMNS": "80"})
    if child.returncode:
        raise SystemExit(f"{name}: the audit exited with {child.returncode}")
    r = AuditResult.load(out / "results.json")
    assert r.search is not None
    return {
        "name": name,
        "command": "privpart audit " + " ".join(args).replace(str(out), "OUT"),
        "wall_minutes": child.wall_seconds / 60,
        "peak_rss_gib": child.peak_rss_mib / 1024,
        "stage_minutes": {k: v / 60 for k, v in r.stage_seconds.items()},
        "search": r.search.to_dict(),
        "cuts": len(r.cuts),
        "selected": r.selected_cut,
        "verdicts": {c.name: c.verdict.status.value for c in r.cuts},
        "implied": [c.name for c in r.cuts if c.implied],
        "deciding": {c.name: c.verdict.short for c in r.cuts if c.attacks},
        "test_accuracy": r.model["test_accuracy"],
    }


def runs(n: int) -> str:
    return plural(n, "attack run")


def section(s: dict) -> list[str]:
    stages = ", ".join(f"{k} {v:.2f}" for k, v in s["stage_minutes"].items() if k != "total")
    se = s["search"]
    lines = [
        f"### {s['name']}: {s['wall_minutes']:.2f} min wall, peak RSS {s['peak_rss_gib']:.2f} GiB",
        "",
        f"`{s['command']}`",
        "",
        f"- stages (min): {stages}",
        f"- search: {se['mode']}, figures {se['figures']}; attacked "
        f"{len(dict.fromkeys(se['probes']))} of {s['cuts']} cuts ({', '.join(se['probes'])}) "
        f"in {runs(se['attack_runs'])}; {plural(len(s['implied']), 'verdict')} implied",
        f"- selected: {s['selected'] or 'none'}; verdicts: "
        + ", ".join(f"{k} {v}" for k, v in s["verdicts"].items()),
    ]
    lines += [f"- deciding at {k}: {v}" for k, v in s["deciding"].items()]
    return [*lines, ""]


def agreement(mono: dict, ex: dict) -> str:
    same = mono["selected"] == ex["selected"] and mono["verdicts"] == ex["verdicts"]
    count = f"{runs(mono['search']['attack_runs'])} against {ex['search']['attack_runs']}"
    return f"{'same' if same else 'DIFFERENT'} selected cut and verdicts ({count})"


def quickstart(out: Path) -> dict:
    quick = run(
        "quick start (default: monotone search, 5 block-boundary cuts)", out / "quickstart", "vgg16"
    )
    target = str(out / "quickstart" / "target")
    every = run(
        "--cuts all (every legal cut; the quick start's trained model)",
        out / "all",
        "vgg16",
        "--checkpoint",
        target,
        "--cuts",
        "all",
    )
    ex = run(
        "exhaustive search, default cuts (agreement check; same model)",
        out / "exhaustive",
        "vgg16",
        "--checkpoint",
        target,
        "--search",
        "exhaustive",
    )
    train = quick["stage_minutes"].get("train", 0.0)
    summary = [
        f"Quick start (set-up excluded): {quick['wall_minutes']:.2f} min "
        f"({'within' if quick['wall_minutes'] <= 5 else 'OVER'} the 5-minute target; "
        f"training {train:.2f} min, attacks {quick['stage_minutes'].get('attacks', 0):.2f} min). "
        f"Test accuracy {quick['test_accuracy']:.1%}.",
        f"`--cuts all` ({every['cuts']} cuts): {every['wall_minutes']:.2f} min without training "
        "(the model above), against 12.5 min for the 5-cut audit before monotone search.",
        f"Monotone vs exhaustive on the default cuts: {agreement(quick, ex)}.",
    ]
    return {"runs": [quick, every, ex], "summary": summary}


def checkpoint(out: Path, ckpt: Path, cuts: str) -> dict:
    model = json.loads((ckpt / "meta.json").read_text())["spec"]["arch"]
    mono = run(
        f"monotone search, cuts {cuts}",
        out / "ckpt-monotone",
        model,
        "--checkpoint",
        str(ckpt),
        "--cuts",
        cuts,
    )
    ex = run(
        f"exhaustive search, cuts {cuts}",
        out / "ckpt-exhaustive",
        model,
        "--checkpoint",
        str(ckpt),
        "--cuts",
        cuts,
        "--search",
        "exhaustive",
    )
    summary = [
        f"Checkpoint `{ckpt}` ({model}; a model where some cut passes), cuts {cuts}: "
        f"monotone vs exhaustive: {agreement(mono, ex)}; monotone {mono['wall_minutes']:.2f} "
        f"min, exhaustive {ex['wall_minutes']:.2f} min.",
    ]
    return {"runs": [mono, ex], "summary": summary}


TITLES = {
    "quickstart": "The README quick start, every legal cut, and the exhaustive agreement check",
    "checkpoint": "Agreement on a model where some cut passes",
}


def commit() -> str | None:
    """The privpart commit that ran (a part's figures belong to that code)."""
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                       cwd=Path(__file__).parent)  # fmt: skip
    return r.stdout.strip() or None


def render(parts: dict) -> str:
    lines = ["# privpart audit: monotone cut search, timed through the CLI (CPU)", ""]
    for k in TITLES:
        if k not in parts:
            continue
        p = parts[k]
        st = "n/a" if p["cpu_steal_percent"] is None else f"{p['cpu_steal_percent']:.1f}%"
        lines += [
            f"## {TITLES[k]}",
            "",
            f"{p['date']}; commit {p.get('commit') or 'unknown'}; machine: {p['machine']}; "
            f"CPU steal (hypervisor, /proc/stat) during this part: {st}",
            "",
            *p["summary"],
            "",
            *([p["note"], ""] if p.get("note") else []),
        ]
        for s in p["runs"]:
            lines += section(s)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("runs/bench-audit"))
    ap.add_argument(
        "--checkpoint",
        type=Path,
        help="instead of the quick start: monotone vs exhaustive on this checkpoint",
    )
    ap.add_argument("--cuts", default="default", help="with --checkpoint: the cuts, a,b,c")
    ap.add_argument("--note", default="", help="a remark printed under this part's summary")
    ap.add_argument("--render-only", action="store_true", help="re-write audit.md from audit.json")
    args = ap.parse_args()
    try:
        parts = json.loads((RESULTS / "audit.json").read_text()).get("parts", {})
    except (OSError, ValueError):
        parts = {}
    if args.render_only:
        (RESULTS / "audit.md").write_text(render(parts))
        return
    start, t = cpu_ticks(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if args.checkpoint is None:
        key, part = "quickstart", quickstart(args.out)
    else:
        key, part = "checkpoint", checkpoint(args.out, args.checkpoint, args.cuts)
    steal = steal_since(start)
    part |= {"machine": machine(), "date": t, "cpu_steal_percent": steal, "commit": commit()}
    part |= {"note": args.note} if args.note else {}
    parts[key] = part
    write("audit", {"parts": parts}, render(parts))


if __name__ == "__main__":
    main()
