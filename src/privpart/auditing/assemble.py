"""The audit's assembly stage: evidence per cut (figures and verdicts by implication) ->
selection -> optional `--confirm` re-runs -> the typed `AuditResult`."""

from __future__ import annotations

import datetime as dt
import platform
from collections.abc import Callable
from typing import Any

import torch

from privpart.attacks import AttackResult
from privpart.auditing.config import AuditConfig
from privpart.auditing.executors import AttackJob
from privpart.auditing.results import SCHEMA_VERSION, AuditResult, CutReport, SearchRecord
from privpart.auditing.schedule import AttackScheduler
from privpart.certify import FisherBound
from privpart.partition import Cut
from privpart.profiling import ProfileResult
from privpart.selection import (
    WHOLE_TRUSTED,
    Breach,
    CutEvidence,
    Implied,
    Selection,
    leakage_score,
    select_cut,
)
from privpart.training import TargetCheck
from privpart.training.target import Target
from privpart.version import __version__

Say = Callable[[str], None]


def environment() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "privpart": __version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def select(
    cuts: list[Cut],
    prof: ProfileResult,
    attacks: dict[str, dict[str, AttackResult]],
    implied: dict[str, list[Implied]],
    confirmations: dict[str, dict[str, AttackResult]],
    cfg: AuditConfig,
) -> Selection:
    """Selection over the evidence; a confirmed attack counts by its more revealing run."""
    c = cfg.constraints
    evidence = []
    for cut in cuts:
        merged = dict(attacks[cut.name])
        for name, again in confirmations[cut.name].items():
            first = CutEvidence(cut.name, 0.0, 0, {name: merged[name]})
            second = CutEvidence(cut.name, 0.0, 0, {name: again})
            if leakage_score(second, c) > leakage_score(first, c):
                merged[name] = again
        p = prof.cuts[cut.name]
        evidence.append(CutEvidence(cut.name, p.total_ms, p.head_memory["total"], merged,
                                    tuple(implied.get(cut.name, ()))))  # fmt: skip
    wt = prof.whole_trusted
    whole = CutEvidence(WHOLE_TRUSTED, wt.total_ms, wt.head_memory["total"], {})
    return select_cut(evidence, whole, c)


def confirm(
    scheduler: AttackScheduler,
    cuts: list[Cut],
    prof: ProfileResult,
    attacks: dict[str, dict[str, AttackResult]],
    implied: dict[str, list[Implied]],
    confirmations: dict[str, dict[str, AttackResult]],
    sel: Selection,
    say: Say,
) -> Selection:
    """Re-run the strongest borderline attack of each borderline cut with another seed;
    the cut is then judged on the more revealing of the two runs."""
    cfg = scheduler.cfg
    c = cfg.constraints
    jobs: list[AttackJob] = []
    for cut in cuts:
        close = {b.attack for b in sel.verdicts[cut.name].reasons
                 if isinstance(b, Breach) and b.borderline}  # fmt: skip
        if not close:
            continue
        name = max(sorted(close), key=lambda a: leakage_score(
            CutEvidence(cut.name, 0.0, 0, {a: attacks[cut.name][a]}), c))  # fmt: skip
        jobs.append(scheduler.job(cut.name, name, seed=cfg.seed + 1))
    if not jobs:
        say("--confirm: no borderline cut")
        return sel
    say(f"--confirm: re-running {', '.join(j.label for j in jobs)} with seed {cfg.seed + 1}")
    again = scheduler.run_jobs(jobs, label="confirm")
    for (cut, name), res in again.items():
        confirmations[cut][name] = res
    return select(cuts, prof, attacks, implied, confirmations, cfg)


def assemble(
    cfg: AuditConfig,
    target: Target,
    quality: TargetCheck,
    cuts: list[Cut],
    reports: list[CutReport],
    prof: ProfileResult,
    sel: Selection,
    search: SearchRecord,
    executor: dict[str, Any],
    stage_seconds: dict[str, float],
) -> AuditResult:
    """The typed result: provenance, model and data, per-cut reports, selection, search."""
    meta = target.meta
    return AuditResult(
        schema_version=SCHEMA_VERSION,
        privpart_version=__version__,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        config=cfg,
        environment={**environment(), "executor": executor},
        model={
            "arch": target.arch,
            "spec": meta["spec"],
            "checkpoint": None if target.checkpoint is None else str(target.checkpoint),
            "weights_sha256": meta["weights_sha256"],
            "test_accuracy": target.test_accuracy(),
            "target_check": quality.to_dict(),
            "train_seconds": meta.get("train_seconds"),
            "task": target.task,
            "classes": meta.get("classes"),
            "defence": meta.get("defence"),
        },
        data={
            "dataset": target.dataset.name,
            "kind": target.dataset.kind,
            "source": target.dataset.source,
            "split_sizes": target.splits.sizes(),
            "split_seed": meta["split_seed"],
            "feature_names": target.dataset.feature_names,
        },
        cuts=reports,
        extremes={"whole_trusted": prof.whole_trusted, "whole_untrusted": prof.whole_untrusted},
        selection=sel,
        stage_seconds=stage_seconds,
        defence=meta.get("defence"),
        search=search,
    )


def reports_of(
    cuts: list[Cut],
    attacks: dict[str, dict[str, AttackResult]],
    prof: ProfileResult,
    sel: Selection,
    confirmations: dict[str, dict[str, AttackResult]],
    skipped: dict[str, str],
    certified: dict[str, FisherBound | None],
    not_run: dict[str, dict[str, str]],
) -> list[CutReport]:
    return [
        CutReport(c, attacks[c.name], prof.cuts[c.name], sel.verdicts[c.name],
                  confirmations[c.name], dict(skipped), certified[c.name], not_run[c.name])
        for c in cuts
    ]  # fmt: skip
