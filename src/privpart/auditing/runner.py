"""The main job, stage by stage: prepare the target (`prepare.py`), attack the cuts the search
picks (`search.py` decides which, `schedule.py` runs them), profile, select and assemble the
result (`assemble.py`).

Data flow: target (checkpoint, or a model + dataset in memory) -> candidate cuts in topological
order -> the search attacks cuts one at a time (features of that cut only, verdict-first attacks)
and decides the others by implication -> certify noisy heads -> profile every candidate ->
select -> `AuditResult`. With an output folder, finished (cut, attack) results are cached under
OUT/cache (a re-run resumes), grids are written under OUT/grids and the result under
OUT/results.json; without one, nothing touches the disk.
"""

from __future__ import annotations

import time
from pathlib import Path

from privpart.attacks import ATTACKS, AttackResult
from privpart.attacks.adaptive import adaptive_attacks
from privpart.auditing import assemble as asm
from privpart.auditing import search
from privpart.auditing.config import AuditConfig, Figures
from privpart.auditing.cutpick import resolve_cuts
from privpart.auditing.executors import Executor, LocalExecutor
from privpart.auditing.prepare import TargetPreparation, attack_params, skip_reason
from privpart.auditing.results import AuditResult, SearchRecord
from privpart.auditing.schedule import AttackScheduler
from privpart.auditing.validate import validate
from privpart.certify import FisherBound, certify
from privpart.models.wrappers import noise_modules
from privpart.partition import Cut
from privpart.profiling import profile_cuts
from privpart.selection import Implied
from privpart.training.target import Target
from privpart.ui import console

CERTIFY_VICTIMS = 32  # victims the certified bound of a noisy head is computed on

__all__ = ["Auditor", "validate"]


class Auditor:
    """Runs one audit; each stage reads the previous stage's typed result."""

    def __init__(
        self,
        cfg: AuditConfig,
        out: Path | None = None,
        show_progress: bool = True,
        executor: Executor | None = None,
        trust_code: bool = False,
    ) -> None:
        self.cfg = cfg
        # not part of cfg: it changes what may run, never a result (cfg keys the result cache)
        self.trust_code = trust_code
        self.out = out
        self.show = show_progress
        self.executor = executor or LocalExecutor()
        self.stage_seconds: dict[str, float] = {}
        self.prepare = TargetPreparation(cfg, out, show_progress, trust_code, self._stage,
                                         self._say)  # fmt: skip

    def _stage(self, name: str, started: float) -> None:
        self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + time.perf_counter() - started

    def _say(self, text: str) -> None:
        if self.show:
            console.print(text)

    def load_target(self) -> Target:
        return self.prepare.load_target()

    # -- stage 1: the target and what to run on it ------------------------------------------
    def _attacks(self, target: Target) -> tuple[list[str], dict[str, str]]:
        """The attacks to run (adaptive ones joined) and those that cannot apply, with why."""
        wanted = list(self.cfg.attacks)
        method = (target.meta.get("defence") or {}).get("method")
        if self.cfg.adaptive and method:
            extra = [a for a in adaptive_attacks(method) if a not in wanted]
            if extra:
                self._say(f"adding attacks that know the {method} defence: {', '.join(extra)}")
            wanted += extra
        skipped = {a: why for a in wanted if (why := skip_reason(self.cfg, a, target))}
        for attack, why in skipped.items():
            self._say(f"[yellow]skipping {attack}:[/] {why}")
        return [a for a in wanted if a not in skipped], skipped

    # -- stage 2: which cuts to attack, and the attacks ---------------------------------------
    def _search(
        self, scheduler: AttackScheduler, cuts: list[Cut], run: list[str]
    ) -> tuple[search.SearchOutcome, SearchRecord]:
        """The monotone search where it holds, else every cut; say which and why."""
        white_box = {a for a in run if ATTACKS.get(a).threat_model.may_read_weights}
        mode, note = search.Search(self.cfg.search), ""
        if not run:
            mode = search.Search.EXHAUSTIVE
            note = "no attack applies to this target (each says why): no cut is attacked"
            self._say(f"[yellow]{note}[/]")
        elif mode is search.Search.MONOTONE and not white_box:
            mode = search.Search.EXHAUSTIVE
            note = ("no white-box attack is judged, so no cut's verdict implies another's "
                    "(that needs an attacker who holds the layers between cuts): every cut is "
                    "attacked")  # fmt: skip
            self._say(f"[yellow]exhaustive search:[/] {note}")
        elif mode is search.Search.MONOTONE:
            self._say(f"monotone search over {len(cuts)} cuts: a breach implies every shallower "
                      "cut broken; white-box safety implies every deeper cut safe against "
                      "white-box attacks (--search exhaustive attacks every cut)")  # fmt: skip
        names = [c.name for c in cuts]

        def audit_cut(i: int, attacks: list[str]) -> search.CutAudit:
            t = time.perf_counter()
            done = scheduler.audit_cut(cuts[i], attacks)
            verdict = f"broken by {', '.join(done.broken_by)}" if done.broken_by else "not broken"
            self._say(f"{cuts[i].name}: {verdict} ({', '.join(done.ran)}; "
                      f"{time.perf_counter() - t:.0f} s)")  # fmt: skip
            return done

        if mode is search.Search.MONOTONE:
            outcome = search.monotone(names, run, white_box, audit_cut)
        elif self.cfg.figures == Figures.ALL:  # every figure at every cut: one batch
            outcome = self._batch(scheduler, cuts, run)
        else:
            outcome = search.exhaustive(len(cuts), run, audit_cut)
        record = SearchRecord(mode.value, str(self.cfg.figures),
                              tuple(names[i] for i in outcome.order), scheduler.attack_runs,
                              note)  # fmt: skip
        return outcome, record

    def _batch(
        self, scheduler: AttackScheduler, cuts: list[Cut], run: list[str]
    ) -> search.SearchOutcome:
        """Every attack at every cut in one batch (an executor may run them side by side)."""
        jobs = [scheduler.job(c.name, a) for c in cuts for a in run]
        done = scheduler.run_jobs(jobs)
        outcome = search.exhaustive(len(cuts), run, lambda i, attacks: search.CutAudit(
            tuple(attacks)))  # fmt: skip
        for (cut, attack), res in done.items():
            scheduler.record(cut).results[attack] = res
        return outcome

    # -- the job ----------------------------------------------------------------------------
    def run(self, target: Target | None = None) -> AuditResult:
        """Audit `target` (default: the configured checkpoint, or train one)."""
        validate(self.cfg, target_given=target is not None)
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        t = time.perf_counter()
        target = target or self.prepare.load_target()
        quality = self.prepare.check(target)
        cuts = resolve_cuts(target.partition, self.cfg.cuts)
        self._stage("prepare", t)
        self._say(f"auditing {len(cuts)} cuts of {target.arch}: {', '.join(c.name for c in cuts)}")
        run, skipped = self._attacks(target)

        scheduler = AttackScheduler(
            self.cfg, target, lambda a: attack_params(self.cfg, a), self.executor, self.out,
            self.show, self._stage, self._say,
        )  # fmt: skip
        outcome, record = self._search(scheduler, cuts, run)

        t = time.perf_counter()
        certified = self.certify(target, cuts)
        self._stage("certify", t)
        t = time.perf_counter()
        prof = profile_cuts(target.partition, cuts, self.cfg.profile, self.show)
        self._stage("profile", t)

        attacks = {c.name: self._ordered(scheduler.record(c.name).results, run) for c in cuts}
        implied = {cuts[i].name: reasons for i, reasons in outcome.implied.items()}
        not_run = {c.name: self._not_run(scheduler, c.name, run, implied) for c in cuts}
        confirmations: dict[str, dict[str, AttackResult]] = {c.name: {} for c in cuts}
        sel = asm.select(cuts, prof, attacks, implied, confirmations, self.cfg)
        if self.cfg.confirm:
            sel = asm.confirm(scheduler, cuts, prof, attacks, implied, confirmations, sel,
                              self._say)  # fmt: skip
        record = SearchRecord(record.mode, record.figures, record.probes, scheduler.attack_runs,
                              record.note)  # fmt: skip
        reports = asm.reports_of(cuts, attacks, prof, sel, confirmations, skipped, certified,
                                 not_run)  # fmt: skip
        self.stage_seconds["total"] = time.perf_counter() - started
        result = asm.assemble(self.cfg, target, quality, cuts, reports, prof, sel, record,
                              self.executor.describe(), self.stage_seconds)  # fmt: skip
        if self.out is not None:
            result.save(self.out / "results.json")
        return result

    @staticmethod
    def _ordered(results: dict[str, AttackResult], run: list[str]) -> dict[str, AttackResult]:
        """A cut's results in the configured attack order (whatever order they ran in)."""
        return {a: results[a] for a in run if a in results}

    @staticmethod
    def _not_run(
        scheduler: AttackScheduler, cut: str, run: list[str], implied: dict[str, list[Implied]]
    ) -> dict[str, str]:
        """Why each attack that applies did not run at `cut`."""
        rec = scheduler.record(cut)
        out: dict[str, str] = {}
        for reason in implied.get(cut, []):
            for a in run if reason.broken else reason.attacks:
                if a not in rec.results:
                    out[a] = (f"not needed: broken by implication from {reason.by}, whose "
                              "features this cut's determine") if reason.broken else (
                        f"not needed: white-box attacks do not break {reason.by}, whose "
                        "features determine this cut's")  # fmt: skip
        for a in run:
            if a not in rec.results and a not in out:
                out[a] = rec.not_run.get(a, "not needed for the verdict")
        return out

    def certify(self, target: Target, cuts: list[Cut]) -> dict[str, FisherBound | None]:
        """The certified Fisher-information bound at every cut whose head adds Gaussian noise
        (on the first victims, the ones the attacks score), None elsewhere."""
        out: dict[str, FisherBound | None] = {c.name: None for c in cuts}
        if not noise_modules(target.model):
            return out  # a deterministic head certifies nothing
        x = target.dataset.inputs(target.splits.victim[:CERTIFY_VICTIMS], target.input_size)
        for cut in cuts:
            out[cut.name] = bound = certify(target.partition.split(cut).head.eval(), x)
            if bound is not None:
                self._say(f"{cut.name}: {bound.describe()}")
        return out
