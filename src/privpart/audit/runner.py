"""`privpart audit`: train/load the target, attack and profile every cut, select, report.

Data flow: checkpoint -> cuts -> features of aux + victims at every cut (one forward pass) ->
each attack fits on aux, scores on victims -> profile -> select -> results.json -> index.html.
Finished (cut, attack) results are cached under OUT/cache, so a re-run resumes.
"""

from __future__ import annotations

import datetime as dt
import platform
import time
from pathlib import Path

import torch

import privpart
from privpart import attacks as attack_pkg
from privpart.attacks.scoring import SCORING_VERSION
from privpart.audit.cache import ResultCache, cache_key
from privpart.audit.config import AuditConfig
from privpart.audit.cutpick import resolve_cuts
from privpart.audit.executors import AttackJob, Executor, LocalExecutor
from privpart.audit.results import SCHEMA_VERSION, AuditResult, CutReport
from privpart.data import Dataset, load_dataset, splits_from_meta
from privpart.errors import PrivpartError
from privpart.models import ZOO
from privpart.models.user import is_user_arch
from privpart.partition import Partition
from privpart.profiling import profile_cuts
from privpart.report.grids import save_grid
from privpart.selection import WHOLE_TRUSTED, CutEvidence, select_cut
from privpart.training import load_checkpoint, train_to_checkpoint
from privpart.ui import console, progress


def validate(cfg: AuditConfig) -> None:
    """Fail before any expensive work, with messages a user can act on."""
    if cfg.checkpoint is None and not (is_user_arch(cfg.model) or cfg.model in ZOO):
        ZOO.get(cfg.model)  # raises the "unknown model" error listing known ones
    for name in cfg.attacks:
        attack_pkg.ATTACKS.get(name)
    if not cfg.attacks:
        raise PrivpartError("no attacks to run", "pass --attacks cgan,decoder,whitebox,attribute")
    if cfg.attack_steps is not None and cfg.attack_steps <= 0:
        raise PrivpartError(
            f"--attack-steps must be positive, got {cfg.attack_steps}",
            "omit it to use time budgets",
        )
    if cfg.budget_scale <= 0:
        raise PrivpartError(
            f"--budget-scale must be positive, got {cfg.budget_scale}",
            "use e.g. 0.5 for a quick look or 4 for a stronger audit",
        )
    if cfg.checkpoint and not (Path(cfg.checkpoint) / "meta.json").is_file():
        raise PrivpartError(
            f"{cfg.checkpoint} is not a privpart checkpoint",
            "create one with `privpart train` or omit --checkpoint",
        )


def environment() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "privpart": privpart.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _budget(name: str, scale: float, steps: int | None = None) -> attack_pkg.Budget | None:
    """Exactly `steps` if given, else the attack's default budget times `scale`."""
    if steps is not None:
        return attack_pkg.Budget(steps=steps)
    if scale == 1.0:
        return None
    cls = attack_pkg.ATTACKS.get(name)
    return attack_pkg.Budget().scaled(scale, float(cls.default_seconds))


class Auditor:
    """Runs one audit into `out`; each stage reads the previous stage's typed result."""

    def __init__(
        self,
        cfg: AuditConfig,
        out: Path,
        show_progress: bool = True,
        executor: Executor | None = None,
    ) -> None:
        self.cfg = cfg
        self.out = out
        self.show = show_progress
        self.executor = executor or LocalExecutor()
        self.stage_seconds: dict[str, float] = {}
        self.cache = ResultCache(out / "cache")

    def _stage(self, name: str, started: float) -> None:
        self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + time.perf_counter() - started

    def defended(self, base: Path) -> Path:
        """With `--defence`, a defended copy of `base` (trained once, reused on re-runs).

        The audit then attacks it with fresh attackers trained from scratch against the frozen
        defended head, never the adversary used inside the defence's training loop.
        """
        from privpart.defences import defend  # only imported when a defence is asked for

        cut = self.cfg.defence_cut
        if not cut:
            raise PrivpartError("--defence needs --defence-cut", "name the cut to defend")
        target = self.out / f"defended-{self.cfg.defence}-{cut}"
        if (target / "meta.json").is_file():
            console.print(f"reusing the defended model trained earlier in {target}")
            return target
        t = time.perf_counter()
        console.rule(f"training the {self.cfg.defence} defence at {cut}")
        path = defend(
            base,
            self.cfg.defence,
            cut,
            target,
            dict(self.cfg.defence_params),
            data_dir=Path(self.cfg.data_dir) if self.cfg.data_dir else None,
            show_progress=self.show,
        )
        self._stage("defence", t)
        return path

    def checkpoint(self) -> Path:
        """The given checkpoint, else one trained by an earlier run of this audit, else train."""
        if self.cfg.checkpoint:
            return Path(self.cfg.checkpoint)
        target = self.out / "target"
        if (target / "meta.json").is_file():
            console.print(f"reusing the target model trained earlier in {target}")
            return target
        t = time.perf_counter()
        console.rule(f"training {self.cfg.model} on {self.cfg.dataset}")
        console.print(
            f"CPU budget: {self.cfg.train_limit or 'all'} samples x {self.cfg.train_epochs} "
            "epoch(s); raise --train-limit for accuracy"
        )
        path = train_to_checkpoint(
            self.cfg.model,
            self.cfg.dataset,
            target,
            data_dir=Path(self.cfg.data_dir) if self.cfg.data_dir else None,
            limit=self.cfg.train_limit,
            epochs=self.cfg.train_epochs,
            seed=self.cfg.seed,
            task=self.cfg.task,
            n_aux=self.cfg.n_aux,
            n_victim=self.cfg.n_victim,
            show_progress=self.show,
        )
        self._stage("train", t)
        return path

    def _attack_key(self, meta: dict, cut: str, attack: str, budget: object) -> str:
        return cache_key(
            weights=meta["weights_sha256"],
            dataset=meta.get("dataset_spec"),
            splits=meta["split_sizes"],
            seed=self.cfg.seed,
            split_seed=meta["split_seed"],
            cut=cut,
            attack=attack,
            budget=repr(budget),
            attribute=self.cfg.attribute,
            version=privpart.__version__,
            scoring=SCORING_VERSION,
        )

    def _attack_params(self, name: str, ds: Dataset, task: str) -> dict:
        if name != "attribute":
            return {}
        available = attack_pkg.available_attributes(ds)
        if self.cfg.attribute and self.cfg.attribute not in available:
            raise PrivpartError(
                f"dataset {ds.name} has no attribute {self.cfg.attribute!r}",
                f"choose --attribute from: {', '.join(sorted(available))}",
            )
        return {
            "attribute": self.cfg.attribute
            or attack_pkg.default_attribute(ds.name, task, available)
        }

    def run(self) -> AuditResult:
        validate(self.cfg)
        self.out.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        ckpt = self.checkpoint()
        expect = None if self.cfg.checkpoint else self.cfg.model
        if self.cfg.defence:
            load_checkpoint(ckpt, expect_arch=expect)  # check the base before training on it
            ckpt, expect = self.defended(ckpt), None
        model, meta = load_checkpoint(ckpt, expect_arch=expect)

        t = time.perf_counter()
        data_dir = Path(self.cfg.data_dir) if self.cfg.data_dir else None
        ds = load_dataset(meta.get("dataset_spec", self.cfg.dataset), data_dir)
        if meta.get("task") and meta["task"] != "class":
            ds = ds.with_task(meta["task"])
        splits = splits_from_meta(ds, meta)
        task = meta.get("task", "class")
        input_shape = tuple(meta["input_shape"])
        part = Partition(model, input_shape)
        cuts = resolve_cuts(part, self.cfg.cuts)
        self._stage("prepare", t)
        console.print(
            f"auditing {len(cuts)} cuts of {meta['spec']['arch']}: "
            f"{', '.join(c.name for c in cuts)}"
        )

        # Which (cut, attack) results are already cached?
        plan = {}
        for cut in cuts:
            for name in self.cfg.attacks:
                budget = _budget(name, self.cfg.budget_scale, self.cfg.attack_steps)
                key = self._attack_key(meta, cut.name, name, budget)
                plan[(cut.name, name)] = (key, budget, self.cache.get(key))
        need = [c for c in cuts if any(plan[(c.name, a)][2] is None for a in self.cfg.attacks)]

        t = time.perf_counter()
        feature_sets = (
            attack_pkg.compute_feature_sets(
                part, ds, splits, need, input_shape[1:], show_progress=self.show
            )
            if need
            else {}
        )
        self._stage("features", t)

        t = time.perf_counter()
        results: dict[str, dict[str, dict]] = {c.name: {} for c in cuts}
        jobs = []
        for cut in cuts:
            for name in self.cfg.attacks:
                key, budget, cached = plan[(cut.name, name)]
                if cached is None:
                    params = self._attack_params(name, ds, task)
                    jobs.append(AttackJob(cut.name, name, budget, self.cfg.seed, params))
                else:
                    cached["cached"] = True
                    results[cut.name][name] = cached
        with progress(disable=not self.show) as bar:
            bar_id = bar.add_task(
                "attacks",
                total=len(plan),
                completed=len(plan) - len(jobs),
                info=f"{len(plan) - len(jobs)} cached, {self.executor.name}",
            )

            def job_started(job: AttackJob) -> None:
                bar.update(bar_id, info=job.label)

            def job_done(job: AttackJob, res: attack_pkg.AttackResult) -> None:
                done = res.to_dict()
                done["grid"] = self._grid(job.cut, job.attack, feature_sets[job.cut], res)
                self.cache.put(plan[(job.cut, job.attack)][0], done)
                done["cached"] = False
                results[job.cut][job.attack] = done
                bar.update(bar_id, advance=1, info=f"{job.label} done")

            self.executor.run(jobs, feature_sets, job_done, job_started)
        # Executors may finish jobs in any order; results.json keeps cut x attack order.
        results = {c.name: {a: results[c.name][a] for a in self.cfg.attacks} for c in cuts}
        self._stage("attacks", t)
        feature_sets.clear()  # free the features before profiling

        t = time.perf_counter()
        prof = profile_cuts(part, cuts, self.cfg.profile, self.show)
        self._stage("profile", t)

        evidence = [
            CutEvidence(
                c.name,
                prof.cuts[c.name].total_ms,
                prof.cuts[c.name].head_memory["total"],
                results[c.name],
            )
            for c in cuts
        ]
        wt = prof.whole_trusted
        whole = CutEvidence(WHOLE_TRUSTED, wt.total_ms, wt.head_memory["total"], {})
        sel = select_cut(evidence, whole, self.cfg.constraints)

        reports = []
        for c in cuts:
            status = "selected" if sel.selected == c.name else "rejected"
            reason = sel.reasons.get(c.name, "the fastest cut that no attack breaks")
            if status == "rejected" and reason.startswith("passes"):
                status = "passes"
            reports.append(
                CutReport(
                    c.to_dict(),
                    results[c.name],
                    prof.cuts[c.name].to_dict(),
                    {"status": status, "reason": reason},
                )
            )
        self.stage_seconds["total"] = time.perf_counter() - started
        result = AuditResult(
            schema_version=SCHEMA_VERSION,
            privpart_version=privpart.__version__,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            config=self.cfg.to_dict(),
            environment={**environment(), "executor": self.executor.describe()},
            model={
                "arch": meta["spec"]["arch"],
                "spec": meta["spec"],
                "checkpoint": str(ckpt),
                "weights_sha256": meta["weights_sha256"],
                "test_accuracy": meta["test_accuracy"],
                "train_seconds": meta.get("train_seconds"),
                "task": meta.get("task", "class"),
                "classes": meta.get("classes"),
                "defence": meta.get("defence"),
            },
            data={
                "dataset": ds.name,
                "kind": ds.kind,
                "source": ds.source,
                "split_sizes": splits.sizes(),
                "split_seed": meta["split_seed"],
                "feature_names": ds.feature_names,
            },
            cuts=reports,
            extremes={
                "whole_trusted": prof.whole_trusted.to_dict(),
                "whole_untrusted": prof.whole_untrusted.to_dict(),
            },
            selection=sel.to_dict(),
            selected_cut=sel.selected,
            stage_seconds=self.stage_seconds,
            defence=meta.get("defence"),
        )
        result.save(self.out / "results.json")
        return result

    def _grid(self, cut: str, attack: str, fs: object, res: object) -> str | None:
        samples = getattr(res, "samples", None)
        if samples is None or getattr(fs, "kind", "image") != "image":
            return None
        rel = Path("grids") / f"{cut}__{attack}.png"
        originals = getattr(res, "sample_inputs", None)
        if originals is None:
            originals = fs.victim_inputs[: samples.shape[0]]
        save_grid(originals, samples, self.out / rel)
        return str(rel)
