"""The main job: train/load the target, attack and profile every cut, select.

Data flow: target (checkpoint, or a model + dataset in memory) -> cuts -> features of aux +
victims at every cut (one forward pass) -> each attack fits on what its threat model grants and
is scored on the victims -> profile -> select -> `AuditResult`. With an output folder, finished
(cut, attack) results are cached under OUT/cache (a re-run resumes), grids are written under
OUT/grids and the result under OUT/results.json; without one, nothing touches the disk.
"""

from __future__ import annotations

import datetime as dt
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch

from privpart import attacks as attack_pkg
from privpart.attacks import ATTACKS, AttackResult, Budget, Output
from privpart.attacks.adaptive import adaptive_attacks
from privpart.attacks.features import feature_bytes
from privpart.attacks.grid import save_grid
from privpart.attacks.scoring import SCORING_VERSION
from privpart.auditing.cache import ResultCache, cache_key
from privpart.auditing.config import AuditConfig
from privpart.auditing.cutpick import resolve_cuts
from privpart.auditing.executors import AttackJob, Executor, LocalExecutor
from privpart.auditing.results import SCHEMA_VERSION, AuditResult, CutReport
from privpart.auditing.validate import validate
from privpart.certify import FisherBound, certify
from privpart.data import DataSplits
from privpart.device import resolve_device
from privpart.errors import PrivpartError
from privpart.models.wrappers import noise_modules
from privpart.partition import Cut
from privpart.profiling import ProfileResult, profile_cuts
from privpart.selection import (
    WHOLE_TRUSTED,
    Breach,
    CutEvidence,
    Selection,
    leakage_score,
    select_cut,
)
from privpart.training import (
    TargetCheck,
    check_target,
    import_to_checkpoint,
    require_useful,
    train_to_checkpoint,
)
from privpart.training.target import Target
from privpart.ui import console, progress
from privpart.version import __version__

CERTIFY_VICTIMS = 32  # victims the certified bound of a noisy head is computed on


def feature_budget(gib: float | None) -> int:
    """Bytes of features one pass may keep: `gib` if given, else half the memory this machine
    has available now (Linux /proc/meminfo), else unlimited. It decides how many forward passes
    the features take, never a result."""
    if gib is not None:
        return int(gib * 2**30)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 // 2
    except (OSError, ValueError, IndexError):
        pass
    return 1 << 62


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


def attack_budget(name: str, scale: float, steps: int | None = None) -> Budget | None:
    """Exactly `steps` if given, else the attack's default budget times `scale`."""
    if steps is not None:
        return Budget(steps=steps)
    if scale == 1.0:
        return None
    return Budget().scaled(scale, float(ATTACKS.get(name).default_seconds))


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
        self.cache = ResultCache(out / "cache") if out is not None else None

    def _stage(self, name: str, started: float) -> None:
        self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + time.perf_counter() - started

    def _say(self, text: str) -> None:
        if self.show:
            console.print(text)

    # -- the target -------------------------------------------------------------------------
    def _need_out(self, what: str) -> Path:
        if self.out is None:
            raise PrivpartError(
                f"{what} writes a checkpoint, and this audit has no output folder",
                "pass out=FOLDER (CLI: --out), or give a trained model",
            )
        return self.out

    def defended(self, base: Path) -> Path:
        """With `--defence`, a defended copy of `base` (trained once, reused on re-runs).

        The audit then attacks it with fresh attackers trained from scratch against the frozen
        defended head, never the adversary used inside the defence's training loop.
        """
        from privpart.defences import defend  # only imported when a defence is asked for

        cut = self.cfg.defence_cut
        if not cut:
            raise PrivpartError("--defence needs --defence-cut", "name the cut to defend")
        target = self._need_out("a defence") / f"defended-{self.cfg.defence}-{cut}"
        if (target / "meta.json").is_file():
            self._say(f"reusing the defended model trained earlier in {target}")
            return target
        t = time.perf_counter()
        if self.show:
            console.rule(f"training the {self.cfg.defence} defence at {cut}")
        path = defend(
            base,
            self.cfg.defence,
            cut,
            target,
            dict(self.cfg.defence_params),
            data_dir=Path(self.cfg.data_dir) if self.cfg.data_dir else None,
            show_progress=self.show,
            device=str(resolve_device(self.cfg.device)),
            trust_code=self.code_trusted(),
        )
        self._stage("defence", t)
        return path

    def checkpoint(self) -> Path:
        """The given checkpoint, else one made by an earlier run of this audit, else make it:
        import the weights as they are (`train=False`), or train (from the weights, if any)."""
        if self.cfg.checkpoint:
            return Path(self.cfg.checkpoint)
        target = self._need_out("making the target") / "target"
        if (target / "meta.json").is_file():
            self._say(f"reusing the target model made earlier in {target}")
            return target
        t = time.perf_counter()
        cfg = self.cfg
        data_dir = Path(cfg.data_dir) if cfg.data_dir else None
        attributes = Path(cfg.attributes) if cfg.attributes else None
        if cfg.weights and not cfg.train:
            if self.show:
                console.rule(f"importing {cfg.model} from {cfg.weights} (no training)")
            path = import_to_checkpoint(
                cfg.model, Path(cfg.weights), cfg.dataset, target, data_dir=data_dir,
                seed=cfg.seed, task=cfg.task, n_aux=cfg.n_aux, n_victim=cfg.n_victim,
                max_train=cfg.max_train, normalize=cfg.normalize, device=cfg.device,
                attributes=attributes, show_progress=self.show,
            )  # fmt: skip
            self._stage("import", t)
            return path
        if self.show:
            console.rule(f"training {cfg.model} on {cfg.dataset}")
        self._say(
            f"training budget: {cfg.train_limit or f'at most {cfg.max_train}'} samples x "
            f"{cfg.train_epochs} epoch(s); raise --train-limit / --epochs for accuracy"
        )
        path = train_to_checkpoint(
            cfg.model, cfg.dataset, target, data_dir=data_dir, train_limit=cfg.train_limit,
            max_train=cfg.max_train, epochs=cfg.train_epochs, seed=cfg.seed, task=cfg.task,
            n_aux=cfg.n_aux, n_victim=cfg.n_victim, show_progress=self.show,
            weights=Path(cfg.weights) if cfg.weights else None, device=cfg.device,
            attributes=attributes, normalize=cfg.normalize,
        )  # fmt: skip
        self._stage("train", t)
        return path

    def code_trusted(self) -> bool:
        """May the target's architecture be a Python file? With `trust_code`, or when no
        checkpoint was given: the model is then the one the caller named (`cfg.model`, checked
        against the checkpoint's architecture), not code a checkpoint brought along."""
        return self.trust_code or not self.cfg.checkpoint

    def load_target(self) -> Target:
        ckpt = self.checkpoint()
        expect = None if self.cfg.checkpoint else self.cfg.model
        trust = self.code_trusted()
        if self.cfg.defence:
            base = Target.load(ckpt, expect_arch=expect, trust_code=trust)  # check it first
            ckpt, expect = self.defended(ckpt), base.arch  # the same architecture, defended
        data_dir = Path(self.cfg.data_dir) if self.cfg.data_dir else None
        return Target.load(ckpt, data_dir, expect_arch=expect, trust_code=trust)

    def check_target(self, target: Target) -> TargetCheck:
        """Stop before judging any cut of a model near chance (unless allowed)."""
        check = check_target(
            target.test_accuracy(device=resolve_device(self.cfg.device)),
            target.dataset.labels[target.splits.target_test],
        )
        self._say(f"target: {check.describe()}; splits {target.splits.describe()}")
        more = "`train_epochs`, `train_limit`" if target.meta.get("trained", True) else (
            "fine-tune from its weights: `train=True`"
        )  # fmt: skip
        require_useful(check, self.cfg.allow_weak_target, more=more)
        if check.weak:
            self._say("[yellow]auditing a near-chance target (--allow-weak-target)[/]")
        return check

    # -- attacks ----------------------------------------------------------------------------
    def _params(self, name: str, target: Target) -> dict:
        params = dict(self.cfg.attack_params.get(name, {}))
        if self.cfg.attribute is not None and "attribute" in ATTACKS.get(name).params:
            params.setdefault("attribute", self.cfg.attribute)
        return params

    def _skip_reason(self, name: str, target: Target) -> str | None:
        """Why an attack cannot say anything on this target, or None."""
        cls = ATTACKS.get(name)
        if cls.output is not Output.ATTRIBUTE:
            return None
        ds = target.dataset
        available = attack_pkg.available_attributes(ds)
        wanted = self._params(name, target).get("attribute")
        if wanted is not None and wanted not in available:
            raise PrivpartError(
                f"dataset {ds.name} has no attribute {wanted!r}",
                f"choose --attribute from: {', '.join(sorted(available))}",
            )
        chosen = wanted or attack_pkg.default_attribute(ds.name, target.task, available)
        if chosen == target.task:
            return (
                f"no private attribute other than the task label ({target.task}): the server "
                "learns the label from every prediction, so inferring it is no leak of the cut; "
                f"give per-image attributes or choose one with --attribute "
                f"({', '.join(sorted(available))})"
            )
        return None

    def _key(self, target: Target, cut: str, job: AttackJob) -> str:
        meta = target.meta
        return cache_key(
            weights=meta["weights_sha256"],
            dataset=meta.get("dataset_spec"),
            splits=meta["split_sizes"],
            seed=job.seed,
            split_seed=meta["split_seed"],
            cut=cut,
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

    def _run_jobs(
        self, target: Target, jobs: list[AttackJob], label: str = "attacks"
    ) -> dict[tuple[str, str], AttackResult]:
        """Every job's result: from the cache, else computed (features once per cut needed)."""
        done: dict[tuple[str, str], AttackResult] = {}
        todo: list[AttackJob] = []
        keys = {}
        for job in jobs:
            keys[(job.cut, job.attack)] = key = self._key(target, job.cut, job)
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                done[(job.cut, job.attack)] = replace(AttackResult.from_dict(hit), cached=True)
            else:
                todo.append(job)
        if not todo:
            return done
        need = [target.partition.cut(c) for c in dict.fromkeys(j.cut for j in todo)]
        groups = feature_groups(need, target.splits, feature_budget(self.cfg.feature_memory_gib))
        if len(groups) > 1:
            gib = feature_bytes(need, target.splits) / 2**30
            cap = feature_budget(self.cfg.feature_memory_gib) / 2**30
            self._say(
                f"features of {len(need)} cuts need {gib:.1f} GiB: computed in {len(groups)} "
                f"passes of at most {cap:.1f} GiB (--feature-memory)"
            )
        device = resolve_device(self.cfg.device)
        with progress(disable=not self.show) as bar:
            bar_id = bar.add_task(
                label, total=len(jobs), completed=len(done),
                info=f"{len(done)} cached, {self.executor.name}",
            )  # fmt: skip

            def job_started(job: AttackJob) -> None:
                bar.update(bar_id, info=job.label)

            def job_done(job: AttackJob, res: AttackResult) -> None:
                res = self._grid(res, "" if job.seed == self.cfg.seed else f"__seed{job.seed}")
                if self.cache is not None:
                    self.cache.put(keys[(job.cut, job.attack)], res.to_dict())
                done[(job.cut, job.attack)] = res
                bar.update(bar_id, advance=1, info=f"{job.label} done")

            for group in groups:
                t = time.perf_counter()
                feature_sets = attack_pkg.compute_feature_sets(
                    target.partition, target.dataset, target.splits, group, target.input_size,
                    show_progress=self.show, task=target.task, device=device,
                )  # fmt: skip
                self._stage("features", t)
                t = time.perf_counter()
                names = {c.name for c in group}
                self.executor.run([j for j in todo if j.cut in names], feature_sets, job_done,
                                  job_started)  # fmt: skip
                feature_sets.clear()  # free this pass's features before the next
                self._stage(label, t)
        return done

    # -- the job ----------------------------------------------------------------------------
    def run(self, target: Target | None = None) -> AuditResult:
        """Audit `target` (default: the configured checkpoint, or train one)."""
        validate(self.cfg, target_given=target is not None)
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        t = time.perf_counter()
        target = target or self.load_target()
        quality = self.check_target(target)
        part = target.partition
        cuts = resolve_cuts(part, self.cfg.cuts)
        self._stage("prepare", t)
        self._say(f"auditing {len(cuts)} cuts of {target.arch}: {', '.join(c.name for c in cuts)}")

        wanted = list(self.cfg.attacks)
        method = (target.meta.get("defence") or {}).get("method")
        if self.cfg.adaptive and method:
            extra = [a for a in adaptive_attacks(method) if a not in wanted]
            if extra:
                self._say(f"adding attacks that know the {method} defence: {', '.join(extra)}")
            wanted += extra
        skipped = {a: why for a in wanted if (why := self._skip_reason(a, target))}
        for attack, why in skipped.items():
            self._say(f"[yellow]skipping {attack}:[/] {why}")
        run = [a for a in wanted if a not in skipped]
        jobs = [
            AttackJob(c.name, a, attack_budget(a, self.cfg.budget_scale, self.cfg.attack_steps),
                      self.cfg.seed, self._params(a, target))
            for c in cuts for a in run
        ]  # fmt: skip
        if jobs and all(j.budget is None or j.budget.seconds for j in jobs):  # clocks, not steps
            seconds = sum(j.budget.seconds if j.budget and j.budget.seconds
                          else ATTACKS.get(j.attack).default_seconds for j in jobs)  # fmt: skip
            self._say(f"attacks: {len(jobs)} runs budgeted {seconds / 60:.0f} min of clock in all "
                      "(--budget-scale trades time for strength)")  # fmt: skip
        results = self._run_jobs(target, jobs)

        t = time.perf_counter()
        certified = self.certify(target, cuts)
        self._stage("certify", t)

        t = time.perf_counter()
        prof = profile_cuts(part, cuts, self.cfg.profile, self.show)
        self._stage("profile", t)

        attacks = {c.name: {a: results[(c.name, a)] for a in run} for c in cuts}
        confirmations: dict[str, dict[str, AttackResult]] = {c.name: {} for c in cuts}
        sel = self._select(cuts, prof, attacks, confirmations)
        if self.cfg.confirm:
            sel = self._confirm(target, cuts, prof, attacks, confirmations, sel)

        reports = [
            CutReport(c, attacks[c.name], prof.cuts[c.name], sel.verdicts[c.name],
                      confirmations[c.name], dict(skipped), certified[c.name])
            for c in cuts
        ]  # fmt: skip
        self.stage_seconds["total"] = time.perf_counter() - started
        meta = target.meta
        result = AuditResult(
            schema_version=SCHEMA_VERSION,
            privpart_version=__version__,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            config=self.cfg,
            environment={**environment(), "executor": self.executor.describe()},
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
            extremes={
                "whole_trusted": prof.whole_trusted,
                "whole_untrusted": prof.whole_untrusted,
            },
            selection=sel,
            stage_seconds=self.stage_seconds,
            defence=meta.get("defence"),
        )
        if self.out is not None:
            result.save(self.out / "results.json")
        return result

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

    def _select(
        self,
        cuts: list[Cut],
        prof: ProfileResult,
        attacks: dict[str, dict[str, AttackResult]],
        confirmations: dict[str, dict[str, AttackResult]],
    ) -> Selection:
        """Selection over the evidence; a confirmed attack counts by its more revealing run."""
        c = self.cfg.constraints
        evidence = []
        for cut in cuts:
            merged = dict(attacks[cut.name])
            for name, again in confirmations[cut.name].items():
                first = CutEvidence(cut.name, 0.0, 0, {name: merged[name]})
                second = CutEvidence(cut.name, 0.0, 0, {name: again})
                if leakage_score(second, c) > leakage_score(first, c):
                    merged[name] = again
            p = prof.cuts[cut.name]
            evidence.append(CutEvidence(cut.name, p.total_ms, p.head_memory["total"], merged))
        wt = prof.whole_trusted
        whole = CutEvidence(WHOLE_TRUSTED, wt.total_ms, wt.head_memory["total"], {})
        return select_cut(evidence, whole, c)

    def _confirm(
        self,
        target: Target,
        cuts: list[Cut],
        prof: ProfileResult,
        attacks: dict[str, dict[str, AttackResult]],
        confirmations: dict[str, dict[str, AttackResult]],
        sel: Selection,
    ) -> Selection:
        """Re-run the strongest borderline attack of each borderline cut with another seed;
        the cut is then judged on the more revealing of the two runs."""
        c = self.cfg.constraints
        jobs = []
        for cut in cuts:
            close = {b.attack for b in sel.verdicts[cut.name].reasons
                     if isinstance(b, Breach) and b.borderline}  # fmt: skip
            if not close:
                continue
            name = max(sorted(close), key=lambda a: leakage_score(
                CutEvidence(cut.name, 0.0, 0, {a: attacks[cut.name][a]}), c))  # fmt: skip
            jobs.append(AttackJob(cut.name, name,
                                  attack_budget(name, self.cfg.budget_scale, self.cfg.attack_steps),
                                  self.cfg.seed + 1, self._params(name, target)))  # fmt: skip
        if not jobs:
            self._say("--confirm: no borderline cut")
            return sel
        self._say(f"--confirm: re-running {', '.join(j.label for j in jobs)} with seed "
                  f"{self.cfg.seed + 1}")  # fmt: skip
        again = self._run_jobs(target, jobs, label="confirm")
        for (cut, name), res in again.items():
            confirmations[cut][name] = res
        return self._select(cuts, prof, attacks, confirmations)
