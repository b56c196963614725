"""The audit's options, declared once and grouped; stored in results.json and in cache keys.

An audit is *what* is audited (`model`, `dataset`, `cuts`, `attacks`, `seed`, `device`: the
keywords `privpart.audit` takes at top level) and *how*, in groups a reader can take one at a
time:

- `TargetOptions` (target): how the model and its data are made: trained, imported, loaded;
- `AttackOptions` (attack): the attacks' parameters, budgets and confirmation runs;
- `SearchOptions` (search): which cuts are attacked (monotone or exhaustive) and how many figures;
- `Constraints` (limits, `privpart.selection`): what breaks a cut, the head's memory budget
  (`memory_budget_bytes`, the enclave's EPC) included;
- `ProfileConfig` (profile, `privpart.profiling`): how latency is measured;
- `DefenceOptions` (defence): a defended model to audit instead;
- `ExecutionOptions` (execution): how the work is laid out and shown on this machine.

`AuditConfig` is all of them in one flat record (`cfg.attack_steps`), so results.json and cache
keys keep one level. The command line offers one option per field (tests/auditing/
test_declaration.py fails otherwise; the spelling of each is in `privpart.cli.flags`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from privpart.attacks import DEFAULT_ATTACKS
from privpart.auditing.search import Search
from privpart.profiling import ProfileConfig
from privpart.selection import Constraints


class Figures(StrEnum):
    VERDICT = "verdict"  # stop attacking a cut once a breach is clear
    ALL = "all"  # every attack at every attacked cut


@dataclass(kw_only=True)
class TargetOptions:
    """How the audited model and its data are made. Defaults fit the README's one-command audit
    (VGG-16 on Fashion-MNIST) into ~15 CPU minutes: at most 12,000 training samples for one
    epoch, 2,000 attacker-auxiliary and 256 victim samples (fewer on small datasets: the split
    rule in privpart.data.splits). More data buys a stronger (more trustworthy) verdict.

    `weights` + `train=False` audits the model in the weights file as it is; with `train=True`
    the weights are where training starts. A target whose test accuracy is near chance stops the
    audit unless `allow_weak_target` (privpart.training.quality)."""

    checkpoint: str | Path | None = None  # a privpart checkpoint folder: audited, not trained
    data_dir: str | Path | None = None  # where dataset files are (or are downloaded to)
    task: str | None = None  # the label the model predicts (default: the dataset's task)
    train_limit: int | None = None  # exact training samples; None: the split rule, <= max_train
    max_train: int = 12000
    train_epochs: int = 1
    n_aux: int | None = None  # None: the split rule (min(2000, 1/3 of the training side))
    n_victim: int | None = None  # None: the split rule (min(256, 1/3 of the test side))
    weights: str | Path | None = None  # torchvision-format weights (import, or start training)
    train: bool = True  # False: audit `weights` as they are
    attributes: str | Path | None = None  # per-image attributes file of an image folder
    normalize: str = "auto"  # the model's input normalisation (privpart.models.normalize)
    allow_weak_target: bool = False

    def __post_init__(self) -> None:
        # paths are stored as text: the config is JSON in results.json and in cache keys
        for name in ("checkpoint", "data_dir", "weights", "attributes"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, str(value))


@dataclass(kw_only=True)
class AttackOptions:
    """How hard each attack tries. `attack_steps` gives every attack an exact step budget
    (reproducible runs); otherwise each runs its default time budget times `budget_scale`."""

    attack_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # attack -> params
    attribute: str | None = None  # the private attribute attribute-inference attacks guess
    budget_scale: float = 1.0
    attack_steps: int | None = None
    confirm: bool = False  # re-run the strongest attack with another seed on borderline cuts
    adaptive: bool = True  # on a defended checkpoint, add the attacks that know its defence


@dataclass(kw_only=True)
class SearchOptions:
    """Which cuts are attacked and how far. `monotone` attacks the deepest cut first, then
    bisects (a breach implies every shallower cut broken; privpart.auditing.search); it falls
    back to `exhaustive` (every cut) without white-box attacks. `figures="verdict"` stops
    attacking a cut once a breach is clear; `"all"` runs every attack there."""

    search: Search | str = Search.MONOTONE  # a Search or its name
    figures: Figures | str = Figures.VERDICT


@dataclass(kw_only=True)
class DefenceOptions:
    """Audit a defended copy of the model: `defence` fine-tuned at `defence_cut`."""

    defence: str | None = None
    defence_cut: str | None = None
    defence_params: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class ExecutionOptions:
    """How the work is laid out and shown on this machine; never changes a result."""

    feature_memory_gib: float | None = None  # features kept per pass; None: half the free memory
    wide: bool = False  # the terminal shows every attack's figures (display only)


@dataclass(kw_only=True)
class AuditConfig(
    ExecutionOptions, DefenceOptions, SearchOptions, AttackOptions, TargetOptions
):
    """Everything that determines an audit's outcome (see the module docstring for the groups).

    `device` is where features and attacks compute (`auto`, `cpu`, `cuda[:N]`); `cuts` is
    `default` (block boundaries), `all`, or comma-separated cut names."""

    model: str = "vgg16"
    dataset: str = "fashion-mnist"
    cuts: str = "default"
    attacks: list[str] = field(default_factory=lambda: list(DEFAULT_ATTACKS))
    seed: int = 0
    device: str = "cpu"
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    constraints: Constraints = field(default_factory=Constraints)

    # group name -> its declaration; flat groups are mixed in, the others are one field each
    GROUPS: ClassVar[dict[str, type]] = {
        "target": TargetOptions,
        "attack": AttackOptions,
        "search": SearchOptions,
        "limits": Constraints,
        "profile": ProfileConfig,
        "defence": DefenceOptions,
        "execution": ExecutionOptions,
    }
    NESTED: ClassVar[dict[str, str]] = {"limits": "constraints", "profile": "profile"}

    @classmethod
    def of(cls, top: dict[str, Any], **groups: Any) -> AuditConfig:
        """The config from the top-level values and one object per group (None: defaults)."""
        values = dict(top)
        for name, value in groups.items():
            kind = cls.GROUPS[name]
            if value is None:
                continue
            if not isinstance(value, kind):
                from privpart.errors import PrivpartTypeError

                raise PrivpartTypeError(
                    f"`{name}` must be a {kind.__name__}, got {type(value).__name__}",
                    f"pass {name}=privpart.{kind.__name__}(...)",
                    param=name,
                )
            if name in cls.NESTED:
                values[cls.NESTED[name]] = value
            else:
                values.update({f.name: getattr(value, f.name) for f in fields(kind)})
        return cls(**values)

    @classmethod
    def group_fields(cls) -> dict[str, tuple[str, ...]]:
        """Each flat group's field names, and the top-level ones under "audit"."""
        out = {n: tuple(f.name for f in fields(k)) for n, k in cls.GROUPS.items()
               if n not in cls.NESTED}  # fmt: skip
        grouped = {f for names in out.values() for f in names}
        nested = set(cls.NESTED.values())
        out["audit"] = tuple(f.name for f in fields(cls) if f.name not in grouped | nested)
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["constraints"] = self.constraints.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AuditConfig:
        d = dict(d)
        profile = dict(d.get("profile", {}))
        # results written before the memory budget had one home also kept it in the profile
        # (`epc_bytes`); Constraints.memory_budget_bytes, saved beside it, is the one read
        profile.pop("epc_bytes", None)
        d["profile"] = ProfileConfig(**profile)
        d["constraints"] = Constraints.from_dict(d.get("constraints", {}))
        d["search"] = Search(d.get("search", Search.EXHAUSTIVE))  # older files attacked every cut
        d["figures"] = Figures(d.get("figures", Figures.ALL))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
