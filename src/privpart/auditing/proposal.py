"""`--defend`: when no undefended cut passes, make one pass.

The audit's own evidence orders the search: the cuts that would beat keeping the whole model
trusted, fastest first (`cuts` of them). At each, every defence in `methods` climbs its ladder of
strengths, weakest first (the least accuracy given up); each rung trains a defended checkpoint
from the audited one (cached, so a re-run resumes) and audits it like any model, with fresh
attackers trained from scratch and every attack that knows the defence, at the cut that crosses
to the untrusted side, against keeping the whole model trusted. A rung passes when that audit
selects the defended cut and its accuracy cost stays within `max_accuracy_drop` points. The first
pass at the fastest cut is the proposal; a rung that costs too much accuracy ends its ladder
(stronger rungs cost more). The search stops at its clock budget and says what it did not try.

In the privacy-partitioning setting (the audited attribute is one of the dataset's own labels,
e.g. the fine `class` of a model trained on the coarse `group`) every defence that takes a
private attribute trains against that attribute in the loop. A derived attribute (brightness) is
a statistic of the input, which the reconstruction side of the defence already hides.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from privpart.attacks.attribute_choice import DERIVED
from privpart.auditing.config import AuditConfig
from privpart.auditing.results import AuditResult, DefenceProposal, DefenceTrial
from privpart.auditing.runner import Auditor
from privpart.errors import PrivpartError, PrivpartValueError
from privpart.training import read_meta

# Per defence: its strengths, weakest first, and the cut that crosses for a defended `cut`.
LADDERS: dict[str, tuple[dict[str, Any], ...]] = {
    "bottleneck": (  # ordered by what bench/results/defence.md measured on VGG-16
        {"channels": 4, "sigma": 1.0},
        {"channels": 32, "pool": 1, "sigma": 1.0},
        {"channels": 16, "pool": 1, "sigma": 1.0},
        {"channels": 4, "sigma": 2.0},
        {"channels": 2, "sigma": 3.0},
    ),
    "noise": ({"sigma": 1.0}, {"sigma": 3.0}),
}
SERVED_CUT: dict[str, Callable[[str], str]] = {"bottleneck": lambda cut: f"{cut}.noise"}


def applies(params: dict[str, Any], shape: tuple[int, ...]) -> bool:
    """Whether a rung fits a cut's features: a pooled code needs a map wider than the pool."""
    pool = int(params.get("pool", 0))
    return not pool or (len(shape) == 3 and pool < min(shape[1:]))


@dataclass(frozen=True)
class SearchSettings:
    methods: tuple[str, ...] = ("bottleneck",)
    cuts: int = 2  # the fastest promising cuts tried
    max_accuracy_drop: float = 2.0  # points of test accuracy a defence may cost
    minutes: float = 60.0  # clock budget of the whole search
    training: dict[str, Any] = field(default_factory=dict)  # epochs, limit, ... of each defence

    def check(self) -> None:
        for m in self.methods:
            if m not in LADDERS:
                raise PrivpartValueError(
                    f"`SearchSettings.methods` names {m!r}, which has no strength ladder",
                    f"choose from: {', '.join(LADDERS)}",
                    param="SearchSettings.methods",
                )
        for name, value, rule, ok in (
            ("cuts", self.cuts, ">= 1", self.cuts >= 1),
            ("minutes", self.minutes, "> 0", self.minutes > 0),
            ("max_accuracy_drop", self.max_accuracy_drop, ">= 0", self.max_accuracy_drop >= 0),
        ):
            if not ok:
                raise PrivpartValueError(
                    f"`SearchSettings.{name}` must be {rule}, got {value}",
                    f"the default is {getattr(SearchSettings, name)}",
                    param=f"SearchSettings.{name}",
                )


def promising_cuts(result: AuditResult, n: int) -> list[str]:
    """Audited interior cuts faster than keeping the whole model trusted, fastest first."""
    whole = result.extremes["whole_trusted"].total_ms
    fast = [c for c in result.cuts if c.latency.total_ms < whole and c.cut.position == "interior"]
    return [c.name for c in sorted(fast, key=lambda c: c.latency.total_ms)][:n]


def private_attribute(result: AuditResult) -> str | None:
    """The labelled attribute the audit's attribute attack targeted, if any (not a derived one)."""
    for report in result.cuts:
        for attack in report.attacks.values():
            name = attack.config.get("attribute")
            if name and name not in DERIVED:
                return str(name)
    return None


def _slug(method: str, cut: str, params: dict[str, Any]) -> str:
    return f"{method}-{cut}-" + "-".join(f"{k}{v}" for k, v in params.items())


def _trial(
    cfg: AuditConfig, base: Path, out: Path, method: str, cut: str, params: dict[str, Any],
    settings: SearchSettings, show: bool, trust_code: bool = False, hidden: str | None = None,
) -> DefenceTrial:  # fmt: skip
    from privpart.defences import defend  # only when a defence is searched for
    from privpart.defences.registry import DEFENCES

    started = time.perf_counter()
    if hidden and "private_attribute" in DEFENCES.get(method).params:
        params = {**params, "private_attribute": hidden}
    served = SERVED_CUT.get(method, lambda c: c)(cut)
    folder = out / "defend" / _slug(method, cut, params)
    ckpt = folder / "checkpoint"
    if not (ckpt / "meta.json").is_file():
        defend(base, method, cut, ckpt, {**settings.training, **params},
               data_dir=Path(cfg.data_dir) if cfg.data_dir else None, show_progress=show,
               device=cfg.device, trust_code=trust_code)  # fmt: skip
    rec = read_meta(ckpt)["defence"]
    common = dict(cut=cut, served_cut=served, method=method, params=params,
                  accuracy=rec["task_accuracy"], base_accuracy=rec["base_task_accuracy"],
                  checkpoint=str(ckpt))  # fmt: skip
    cost = 100 * (rec["base_task_accuracy"] - rec["task_accuracy"])
    if cost > settings.max_accuracy_drop:
        return DefenceTrial(
            **common, outcome="too costly",
            reason=f"accuracy {cost:.1f} points below the undefended model's "
            f"(at most {settings.max_accuracy_drop:g} allowed: --max-accuracy-drop)",
            seconds=time.perf_counter() - started,
        )  # fmt: skip
    audit_cfg = replace(cfg, checkpoint=str(ckpt), cuts=served, defence=None, defence_cut=None,
                        defence_params={}, confirm=False)  # fmt: skip
    r = Auditor(audit_cfg, folder / "audit", show_progress=show, trust_code=trust_code).run()
    report = r.cut(served)
    passes = r.selected_cut == served
    why = report.verdict.short if not passes else (
        f"every attack under its limit and faster than keeping the model trusted "
        f"({report.latency.total_ms:.1f} vs {r.extremes['whole_trusted'].total_ms:.1f} ms)"
    )  # fmt: skip
    return DefenceTrial(
        **common, outcome="passes" if passes else "rejected", reason=why,
        total_ms=report.latency.total_ms, certified=report.certified,
        seconds=time.perf_counter() - started,
    )  # fmt: skip


def propose_defence(
    result: AuditResult,
    cfg: AuditConfig,
    out: Path,
    settings: SearchSettings | None = None,
    show_progress: bool = True,
    say: Callable[[str], None] = print,
    trust_code: bool = False,
) -> DefenceProposal:
    """Search defences at the fastest promising cuts of an audit that selected none.
    `trust_code`: the audited checkpoint's architecture may be a Python file (it was trusted
    for the audit: `--trust-code`, or a model the caller named)."""
    settings = settings or SearchSettings()
    settings.check()
    base = result.model.get("checkpoint")
    if not base:
        raise PrivpartError(
            "the defence search fine-tunes the audited checkpoint, and this audit has none on "
            "disk", "audit with an output folder (CLI: --out; library: out=FOLDER)",
        )  # fmt: skip
    cuts = promising_cuts(result, settings.cuts)
    hidden = private_attribute(result)
    shapes = {c: tuple(result.cut(c).cut.shape) for c in cuts}
    rungs = [(c, m, p) for c in cuts for m in settings.methods for p in LADDERS[m]
             if applies(p, shapes[c])]  # fmt: skip
    say(f"defence search: {', '.join(settings.methods)} at {', '.join(cuts) or 'no cut'} "
        f"({len(rungs)} strengths at most)"
        + (f", hiding the private attribute {hidden!r} in the loop" if hidden else "")
        + f", budget {settings.minutes:g} min, accuracy cost "
        f"<= {settings.max_accuracy_drop:g} points")  # fmt: skip
    started = time.perf_counter()
    trials: list[DefenceTrial] = []
    chosen: DefenceTrial | None = None
    ended: set[tuple[str, str]] = set()  # (cut, method) ladders stopped by accuracy
    for cut, method, params in rungs:
        spent = (time.perf_counter() - started) / 60
        if chosen is not None or (cut, method) in ended:
            continue
        if spent >= settings.minutes:
            trials.append(DefenceTrial(cut=cut, served_cut=SERVED_CUT.get(method, lambda c: c)(
                cut), method=method, params=params, outcome="not run",
                reason=f"the search's {settings.minutes:g}-minute budget was spent "
                "(--defend-minutes)"))  # fmt: skip
            continue
        say(f"defence search: {method} {params} at {cut} ({spent:.0f} of "
            f"{settings.minutes:g} min spent)")  # fmt: skip
        trial = _trial(
            cfg, Path(base), out, method, cut, params, settings, show_progress, trust_code, hidden
        )
        trials.append(trial)
        say(f"  {trial.describe()}")
        if trial.outcome == "passes":
            chosen = trial
        elif trial.outcome == "too costly":
            ended.add((cut, method))
    spent = (time.perf_counter() - started) / 60
    if chosen is not None:
        summary = f"Defend the split: {chosen.describe()}; serve cut {chosen.served_cut}."
    elif trials:
        tried = [t for t in trials if t.outcome == "rejected"]
        closest = tried[-1] if tried else None  # the strongest rung that kept the accuracy
        summary = (
            "No defended cut passed"
            + (
                f"; the closest: {closest.describe()}"
                if closest
                else ": every defence tried cost more accuracy than allowed or was not run"
            )
            + ". Keep the whole model trusted, or raise --defend-minutes / --max-accuracy-drop."
        )
    else:
        summary = "No cut is faster than keeping the whole model trusted: nothing to defend."
    return DefenceProposal(trials, chosen, summary, settings.minutes, spent,
                           settings.max_accuracy_drop)  # fmt: skip
