"""Everything that determines an audit's outcome; stored in results.json and in cache keys."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from privpart.attacks import DEFAULT_ATTACKS
from privpart.auditing.search import Search
from privpart.profiling import ProfileConfig
from privpart.selection import Constraints


class Figures(StrEnum):
    VERDICT = "verdict"  # stop attacking a cut once a breach is clear
    ALL = "all"  # every attack at every attacked cut


@dataclass
class AuditConfig:
    """Defaults fit the README's one-command audit (VGG-16 on Fashion-MNIST) into ~15 CPU minutes:
    at most 12,000 training samples for one epoch, 2,000 attacker-auxiliary and 256 victim
    samples (fewer on small datasets: the split rule in privpart.data.splits), five
    block-boundary cuts, the attacks' default time budgets. More data and budget buy a stronger
    (more trustworthy) verdict: scale them with --train-limit / --budget-scale.

    `weights` + `train=False` audits the model in the weights file as it is (`privpart import`);
    with `train=True` the weights are where training starts. A target whose test accuracy is
    near chance stops the audit unless `allow_weak_target` (privpart.training.quality)."""

    model: str = "vgg16"
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    checkpoint: str | None = None
    cuts: str = "default"
    attacks: list[str] = field(default_factory=lambda: list(DEFAULT_ATTACKS))
    attack_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # attack -> params
    attribute: str | None = None
    budget_scale: float = 1.0
    attack_steps: int | None = None  # exact step budget for every attack: reproducible runs
    train_limit: int | None = None  # exact training samples; None: the split rule, <= max_train
    max_train: int = 12000
    train_epochs: int = 1
    task: str | None = None
    n_aux: int | None = None  # None: the split rule (min(2000, 1/3 of the training side))
    n_victim: int | None = None  # None: the split rule (min(256, 1/3 of the test side))
    weights: str | None = None  # local torchvision-format weights (import, or start training)
    train: bool = True  # False: audit `weights` as they are
    attributes: str | None = None  # per-image attributes file of an image folder
    normalize: str = "auto"  # the model's input normalisation (privpart.models.normalize)
    allow_weak_target: bool = False
    feature_memory_gib: float | None = None  # features per pass; None: half the free memory
    seed: int = 0
    device: str = "cpu"  # where features and attacks compute (`auto`, `cpu`, `cuda[:N]`)
    search: Search = Search.MONOTONE  # falls back to exhaustive without white-box attacks
    figures: Figures = Figures.VERDICT
    wide: bool = False  # the terminal shows every figure (display only)
    confirm: bool = False  # re-run the strongest attack with another seed on borderline cuts
    adaptive: bool = True  # on a defended checkpoint, add the attacks that know its defence
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    constraints: Constraints = field(default_factory=Constraints)
    defence: str | None = None
    defence_cut: str | None = None
    defence_params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["constraints"] = self.constraints.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AuditConfig:
        d = dict(d)
        d["profile"] = ProfileConfig(**d.get("profile", {}))
        d["constraints"] = Constraints.from_dict(d.get("constraints", {}))
        d["search"] = Search(d.get("search", Search.EXHAUSTIVE))  # older files attacked every cut
        d["figures"] = Figures(d.get("figures", Figures.ALL))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})
