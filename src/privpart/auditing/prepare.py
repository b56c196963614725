"""The audit's target-preparation stage: check the options, then train, import or load the
target (and its defended copy), check it is worth auditing, and decide which attacks apply.

Nothing here attacks a cut; it hands the next stage a `Target` and the attacks to run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from privpart import attacks as attack_pkg
from privpart.attacks import ATTACKS, Output
from privpart.auditing.config import AuditConfig
from privpart.device import resolve_device
from privpart.errors import PrivpartValueError
from privpart.training import (
    TargetCheck,
    check_target,
    import_to_checkpoint,
    require_useful,
    train_to_checkpoint,
)
from privpart.training.target import Target
from privpart.ui import console

Say = Callable[[str], None]
Stage = Callable[[str, float], None]


def _attribute_applies(target: Target, params: dict) -> str | None:
    """An attribute attack says nothing when the only attribute to infer is the task label."""
    ds = target.dataset
    available = attack_pkg.available_attributes(ds)
    wanted = params.get("attribute")
    if wanted is not None and wanted not in available:
        raise PrivpartValueError(
            f"dataset {ds.name} has no attribute {wanted!r}",
            f"choose `attribute` from: {', '.join(sorted(available))}",
            param="attribute",
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


# Per output kind: why an attack of that kind cannot say anything on a target (None: it can).
APPLIES: dict[Output, Callable[[Target, dict], str | None]] = {Output.ATTRIBUTE: _attribute_applies}


def shared_params(cfg: AuditConfig) -> dict:
    """Audit-wide values an attack receives when it declares a parameter of that name."""
    return {k: v for k, v in {"attribute": cfg.attribute}.items() if v is not None}


def attack_params(cfg: AuditConfig, name: str) -> dict:
    """`name`'s parameters: its own (--attack-param), then the audit-wide ones it declares."""
    params = dict(cfg.attack_params.get(name, {}))
    for key, value in shared_params(cfg).items():
        if key in ATTACKS.get(name).params:
            params.setdefault(key, value)
    return params


def skip_reason(cfg: AuditConfig, name: str, target: Target) -> str | None:
    """Why attack `name` cannot say anything on this target, or None."""
    check = APPLIES.get(ATTACKS.get(name).output)
    return None if check is None else check(target, attack_params(cfg, name))


class TargetPreparation:
    """Makes or loads the target the audit attacks; each step says what it does."""

    def __init__(
        self,
        cfg: AuditConfig,
        out: Path | None,
        show: bool,
        trust_code: bool,
        stage: Stage,
        say: Say,
    ) -> None:
        self.cfg = cfg
        self.out = out
        self.show = show
        self.trust_code = trust_code
        self._stage = stage
        self._say = say

    def _need_out(self, what: str) -> Path:
        if self.out is None:
            raise PrivpartValueError(
                f"{what} writes a checkpoint, and this audit has no output folder",
                "pass `out` (a folder), or give a trained model",
                param="out",
            )
        return self.out

    def defended(self, base: Path) -> Path:
        """With `defence`, a defended copy of `base` (trained once, reused on re-runs).

        The audit then attacks it with fresh attackers trained from scratch against the frozen
        defended head, never the adversary used inside the defence's training loop.
        """
        from privpart.defences import defend  # only imported when a defence is asked for

        cut = self.cfg.defence_cut
        if not cut:
            raise PrivpartValueError(
                "`defence` needs `defence_cut`", "name the cut to defend", param="defence_cut"
            )
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

    def check(self, target: Target) -> TargetCheck:
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
