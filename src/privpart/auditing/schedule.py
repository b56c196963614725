"""The audit's attack-scheduling stage: which (cut, attack) jobs run, in what order, on which
features, and when a cut has seen enough.

- Verdict first: at each cut the attack most likely to decide it runs first: the one that broke
  the most cuts earlier in this audit, then the cheapest by default budget. Once a breach is
  clear (its 95 % interval lies wholly past the limit) the cut is decided and, unless every
  figure was asked for (`figures="all"`), the rest of its attacks do not run.
- Memory: features exist only for the cut being attacked and are released after it (a batch of
  jobs across cuts groups cuts up to `--feature-memory` GiB instead, one pass per group).
- Caching: every finished job is stored under a key of all its inputs; a re-run resumes.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from privpart import attacks as attack_pkg
from privpart.attacks import ATTACKS, AttackResult, Budget, FeatureSet
from privpart.attacks.features import feature_bytes
from privpart.attacks.grid import save_grid
from privpart.attacks.scoring import SCORING_VERSION
from privpart.auditing.cache import ResultCache, cache_key
from privpart.auditing.config import AuditConfig, Figures
from privpart.auditing.executors import AttackJob, Executor
from privpart.auditing.search import CutAudit
from privpart.data import DataSplits
from privpart.device import resolve_device
from privpart.partition import Cut
from privpart.selection import Breach, CutEvidence, judge_cut
from privpart.training.target import Target
from privpart.ui import progress
from privpart.version import __version__

Say = Callable[[str], None]
Stage = Callable[[str, float], None]


def feature_budget(gib: float | None) -> int:
    """Bytes of features one pass of a batch may keep: `gib` if given, else 0 (one cut per
    pass, the smallest peak). It decides how many forward passes run, never a result."""
    return 0 if gib is None else int(gib * 2**30)


def feature_groups(cuts: list[Cut], splits: DataSplits, budget: int) -> list[list[Cut]]:
    """`cuts` in consecutive groups whose features fit `budget` (a cut over it goes alone)."""
    groups: list[list[Cut]] = []
    used = 0
    for cut in cuts:
        size = feature_bytes([cut], splits)
        if groups and used + size <= budget:
            groups[-1].append(cut)
            used += size
        else:
            groups.append([cut])
            used = size
    return groups


def attack_budget(name: str, scale: float, steps: int | None = None) -> Budget | None:
    """Exactly `steps` if given, else the attack's default budget times `scale`."""
    if steps is not None:
        return Budget(steps=steps)
    if scale == 1.0:
        return None
    return Budget().scaled(scale, float(ATTACKS.get(name).default_seconds))


def clear_breach(found: list[Breach]) -> Breach | None:
    """A breach whose 95 % interval lies wholly past its limit (no interval: the figure itself)."""
    return next((b for b in found if not b.passed and not b.borderline), None)


@dataclass
class CutRecord:
    """What the scheduler knows about one cut: results so far and why other attacks did not run."""

    results: dict[str, AttackResult]
    not_run: dict[str, str]


class AttackScheduler:
    """Runs the jobs the search asks for; keeps results, caching, grids and progress."""

    def __init__(
        self,
        cfg: AuditConfig,
        target: Target,
        params: Callable[[str], dict],
        executor: Executor,
        out: Path | None,
        show: bool,
        stage: Stage,
        say: Say,
    ) -> None:
        self.cfg = cfg
        self.target = target
        self.params = params
        self.executor = executor
        self.out = out
        self.show = show
        self.stage = stage
        self.say = say
        self.cache = ResultCache(out / "cache") if out is not None else None
        self.records: dict[str, CutRecord] = {}
        self.breaks: Counter[str] = Counter()  # attack -> cuts it broke so far (verdict-first)
        self.attack_runs = 0  # jobs computed (not served from the cache)

    def record(self, cut: str) -> CutRecord:
        return self.records.setdefault(cut, CutRecord({}, {}))

    def job(self, cut: str, attack: str, seed: int | None = None) -> AttackJob:
        cfg = self.cfg
        budget = attack_budget(attack, cfg.budget_scale, cfg.attack_steps)
        return AttackJob(cut, attack, budget, cfg.seed if seed is None else seed,
                         self.params(attack))  # fmt: skip

    def order(self, attacks: list[str]) -> list[str]:
        """Most likely to decide the cut first: most breaches so far, then cheapest."""
        return sorted(attacks, key=lambda a: (-self.breaks[a], ATTACKS.get(a).default_seconds))

    # -- one cut, verdict first -------------------------------------------------------------
    def audit_cut(self, cut: Cut, attacks: list[str]) -> CutAudit:
        """Attack `cut` with `attacks`, most decisive first; stop at a clear breach unless
        every figure is wanted. Features for this cut only, released before returning."""
        rec = self.record(cut.name)
        ordered = self.order(attacks)
        every = self.cfg.figures == Figures.ALL
        features: dict[str, FeatureSet] = {}
        ran: list[str] = []
        broken_by: list[str] = []
        borderline_by: list[str] = []  # breakers whose every breach here is borderline
        try:
            batches = [ordered] if every else [[a] for a in ordered]
            for i, batch in enumerate(batches):
                done = self.run_jobs([self.job(cut.name, a) for a in batch], cut.name, features)
                for a in batch:
                    res = rec.results[a] = done[(cut.name, a)]
                    ran.append(a)
                    found = judge_cut(CutEvidence(cut.name, 0.0, 0, {a: res}),
                                      self.cfg.constraints)  # fmt: skip
                    if any(not b.passed for b in found):
                        broken_by.append(a)
                        self.breaks[a] += 1
                        if clear_breach(found) is None:
                            borderline_by.append(a)
                clear = clear_breach(judge_cut(
                    CutEvidence(cut.name, 0.0, 0, rec.results), self.cfg.constraints))  # fmt: skip
                if clear is not None and not every:
                    for rest in (a for b in batches[i + 1:] for a in b):
                        rec.not_run[rest] = (
                            f"not needed for the verdict: {clear.attack} broke the cut clearly "
                            "(95% interval past the limit) before it ran; --figures all runs it"
                        )
                    break
        finally:
            features.clear()
        for a in ran:
            rec.not_run.pop(a, None)
        return CutAudit(tuple(ran), tuple(broken_by), tuple(borderline_by))

    # -- a batch of jobs (exhaustive figures, --confirm) ------------------------------------
    def run_jobs(
        self,
        jobs: list[AttackJob],
        label: str = "attacks",
        features: dict[str, FeatureSet] | None = None,
    ) -> dict[tuple[str, str], AttackResult]:
        """Every job's result: from the cache, else computed. With `features`, the features
        computed are kept there for the caller to reuse and release; without, cuts are grouped
        by `--feature-memory` and each group's features are released after it."""
        done: dict[tuple[str, str], AttackResult] = {}
        todo: list[AttackJob] = []
        keys = {}
        for job in jobs:
            keys[(job.cut, job.attack, job.seed)] = key = self._key(job)
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                done[(job.cut, job.attack)] = replace(AttackResult.from_dict(hit), cached=True)
            else:
                todo.append(job)
        if not todo:
            return done
        part = self.target.partition
        need = [part.cut(c) for c in dict.fromkeys(j.cut for j in todo)]
        if features is not None:
            groups = [need]
        else:
            budget = feature_budget(self.cfg.feature_memory_gib)
            groups = feature_groups(need, self.target.splits, budget)
            if len(groups) > 1 and self.cfg.feature_memory_gib is not None:
                gib = feature_bytes(need, self.target.splits) / 2**30
                self.say(f"features of {len(need)} cuts need {gib:.1f} GiB: computed in "
                         f"{len(groups)} passes of at most {budget / 2**30:.1f} GiB")  # fmt: skip
        device = resolve_device(self.cfg.device)
        with progress(disable=not self.show, transient=features is not None) as bar:
            bar_id = bar.add_task(label, total=len(jobs), completed=len(done),
                                  info=f"{len(done)} cached, {self.executor.name}")  # fmt: skip

            def job_started(job: AttackJob) -> None:
                bar.update(bar_id, info=job.label)

            def job_done(job: AttackJob, res: AttackResult) -> None:
                res = self._grid(res, "" if job.seed == self.cfg.seed else f"__seed{job.seed}")
                if self.cache is not None:
                    self.cache.put(keys[(job.cut, job.attack, job.seed)], res.to_dict())
                done[(job.cut, job.attack)] = res
                self.attack_runs += 1
                bar.update(bar_id, advance=1, info=f"{job.label} done")

            for group in groups:
                fs = features if features is not None else {}
                missing = [c for c in group if c.name not in fs]
                t = time.perf_counter()
                if missing:
                    fs.update(attack_pkg.compute_feature_sets(
                        part, self.target.dataset, self.target.splits, missing,
                        self.target.input_size, show_progress=self.show, task=self.target.task,
                        device=device,
                    ))  # fmt: skip
                self.stage("features", t)
                t = time.perf_counter()
                names = {c.name for c in group}
                self.executor.run([j for j in todo if j.cut in names], fs, job_done, job_started)
                if features is None:
                    fs.clear()  # free this pass's features before the next
                self.stage("attacks", t)
        return done

    def _key(self, job: AttackJob) -> str:
        meta = self.target.meta
        return cache_key(
            weights=meta["weights_sha256"],
            dataset=meta.get("dataset_spec"),
            splits=meta["split_sizes"],
            seed=job.seed,
            split_seed=meta["split_seed"],
            cut=job.cut,
            attack=job.attack,
            budget=repr(job.budget),
            params=job.params,
            version=__version__,
            scoring=SCORING_VERSION,
        )

    def _grid(self, res: AttackResult, tag: str = "") -> AttackResult:
        """Victims above reconstructions, for results that have reconstructions."""
        if self.out is None or res.samples is None:
            return res
        rel = Path("grids") / f"{res.cut}__{res.attack}{tag}.png"
        written = save_grid(res, self.out / rel)
        return replace(res, grid=str(rel) if written else None)
