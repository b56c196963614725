"""Executors: who runs the audit's independent (cut, attack) jobs, and where.

The Auditor decides *what* to run (every job whose result is not cached yet) and keeps caching,
grids and progress; an executor only decides *where*. It gets the jobs and each cut's features,
and calls `on_done(job, result)` as each job finishes, in whatever order they finish. So a result
is cached the moment it exists and an interrupted distributed run resumes like a local one.

- `local`: one job after another in this process (the default; never imports Ray);
- `ray`: one Ray task per job with its resource request; each cut's features are put in the
  object store once and shared by every task on that cut.

Reproducibility: with step budgets (`AuditConfig.attack_steps`) a job's result depends only on
its inputs and on the number of torch threads it computes with (CPU kernels split reductions by
thread count, which moves results around the sixth significant digit). A Ray job uses as many
threads as CPUs it was granted, so `--ray-resources cpus=N` reproduces a local run with N torch
threads bit for bit. Time budgets are not reproducible on any executor: steps done depend on speed.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from privpart import attacks as attack_pkg
from privpart.attacks import AttackResult, Budget, FeatureSet
from privpart.cluster import Resources, check_address, ray_session
from privpart.errors import PrivpartError
from privpart.registry import Registry


@dataclass(frozen=True)
class AttackJob:
    """One (cut, attack) unit of work: everything needed to run it, nothing tied to a process."""

    cut: str
    attack: str
    budget: Budget | None
    seed: int
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.cut} / {self.attack}"

    def run(self, fs: FeatureSet) -> AttackResult:
        # Look the function up at call time: tests and callers may wrap `run_attack`.
        return attack_pkg.run_attack(
            self.attack, fs, budget=self.budget, seed=self.seed, **self.params
        )


RAY_RESOURCE = {"cpus": "CPU", "gpus": "GPU"}  # our names -> Ray's resource names
OnDone = Callable[[AttackJob, AttackResult], None]
OnStart = Callable[[AttackJob], None]


class Executor(ABC):
    """Runs a list of jobs; see the module docstring for the contract."""

    name: ClassVar[str]

    @abstractmethod
    def run(
        self,
        jobs: list[AttackJob],
        feature_sets: dict[str, FeatureSet],
        on_done: OnDone,
        on_start: OnStart | None = None,
    ) -> None:
        """Run every job; call `on_done` once per job as it finishes (`on_start` if known)."""

    def describe(self) -> dict[str, Any]:
        """Where the jobs ran, for results.json's environment (not part of any cache key)."""
        return {"name": self.name}


EXECUTORS: Registry[Callable[..., Executor]] = Registry("executor")


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    """In this process, in order, with this process's torch threads."""

    name: ClassVar[str] = "local"

    def run(
        self,
        jobs: list[AttackJob],
        feature_sets: dict[str, FeatureSet],
        on_done: OnDone,
        on_start: OnStart | None = None,
    ) -> None:
        for job in jobs:
            if on_start is not None:
                on_start(job)
            on_done(job, job.run(feature_sets[job.cut]))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "threads": torch.get_num_threads()}


def _run_remote(job: AttackJob, fs: FeatureSet, threads: int) -> AttackResult:
    """The body of a Ray task: as many torch threads as CPUs granted, then the job."""
    torch.set_num_threads(threads)
    return job.run(fs)


def _task_failure(ray: Any, exc: Exception, job: AttackJob) -> PrivpartError:
    """A Ray failure as the error the user would have seen locally, or a clear one."""
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, PrivpartError):
        return cause
    kind = type(exc).__name__
    first = (str(exc).strip().splitlines() or [kind])[0]
    if isinstance(exc, ray.exceptions.OutOfMemoryError | ray.exceptions.WorkerCrashedError):
        hint = "give each job more memory (fewer jobs per node: raise cpus in --ray-resources)"
    else:
        hint = "results finished so far are cached: fix the cause and re-run to resume"
    return PrivpartError(f"attack job {job.label} failed on Ray ({kind}): {first}", hint)


@EXECUTORS.register("ray")
class RayExecutor(Executor):
    """One Ray task per job on the cluster at `address` (see `privpart.cluster`)."""

    name: ClassVar[str] = "ray"

    def __init__(
        self, address: str | None = None, resources: Resources | None = None, **init: Any
    ) -> None:
        self.address = check_address(address)
        self.resources = resources or Resources()
        self.init = init
        self.timings: dict[str, float] = {}  # of the last run: where the wall time went

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "resources_per_job": self.resources.to_dict(),
            "threads": self.resources.threads,
        }

    def run(
        self,
        jobs: list[AttackJob],
        feature_sets: dict[str, FeatureSet],
        on_done: OnDone,
        on_start: OnStart | None = None,
    ) -> None:
        if not jobs:
            return
        start = time.perf_counter()
        with ray_session(self.address, **self.init) as ray:
            self._check_fits(ray)
            connected = time.perf_counter()
            task = ray.remote(_run_remote)
            shared = {cut: ray.put(feature_sets[cut]) for cut in dict.fromkeys(j.cut for j in jobs)}
            self.timings = {
                "connect_s": connected - start,
                "put_s": time.perf_counter() - connected,
            }
            pending = {
                task.options(
                    **self.resources.ray_options(), name=f"privpart-audit {job.label}"
                ).remote(job, shared[job.cut], self.resources.threads): job
                for job in jobs
            }
            try:
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    job = pending.pop(ready[0])
                    try:
                        result = ray.get(ready[0])
                    except ray.exceptions.RayError as exc:
                        raise _task_failure(ray, exc, job) from None
                    on_done(job, result)
            finally:
                for ref in pending:  # a failure or Ctrl-C: stop the rest, keep what is cached
                    ray.cancel(ref, force=True)
            self.timings["jobs_s"] = time.perf_counter() - connected - self.timings["put_s"]

    def _check_fits(self, ray: Any) -> None:
        """A request that no node can satisfy would wait forever: refuse it up front."""
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        for what, want in self.resources.to_dict().items():
            have = max((float(n.get(RAY_RESOURCE[what], 0.0)) for n in nodes), default=0.0)
            if want > have:
                raise PrivpartError(
                    f"each job asks for {want:g} {what}; the largest Ray node has {have:g}",
                    "lower --ray-resources, or add a node that has them (on an autoscaling "
                    "cluster, bring one up first)",
                )
