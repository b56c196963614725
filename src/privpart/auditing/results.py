"""The audit's typed result. It stays dataclasses end to end and becomes JSON only at the file
boundary (`save` / `load`); results.json is the report's only input.

Schema 2 (this version): every attack result carries its metrics' declarations, figures with
95 % intervals and baselines by name; verdicts are typed (`privpart.selection.Verdict`).
Schema 1 files (before typed results) still load: `_upgrade_v1` maps their flat metric and
baseline names onto the built-in declarations and keeps their verdict sentences as notes.

    result.selected_cut
    result.verdicts["features.16"].reasons
    result.leakage("features.16", "decoder").ssim
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privpart.attacks.result import AttackResult
from privpart.auditing.config import AuditConfig
from privpart.certify import FisherBound
from privpart.errors import PrivpartError
from privpart.partition import Cut
from privpart.profiling import CutProfile
from privpart.selection import Selection, Verdict

SCHEMA_VERSION = 2


@dataclass
class CutReport:
    """One audited cut: where it is, what each attack achieved, what it costs, the verdict."""

    cut: Cut
    attacks: dict[str, AttackResult]
    latency: CutProfile
    verdict: Verdict
    confirmations: dict[str, AttackResult] = field(default_factory=dict)  # --confirm re-runs
    skipped: dict[str, str] = field(default_factory=dict)  # attack -> why it did not run
    certified: FisherBound | None = None  # a bound for every unbiased attacker (noisy heads)
    not_run: dict[str, str] = field(default_factory=dict)  # attack -> why not at this cut

    @property
    def implied(self) -> bool:
        """Decided from another cut's figures (monotone search), with none of its own."""
        return self.verdict.implied_breach is not None and not self.verdict.breaches

    @property
    def name(self) -> str:
        return self.cut.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "cut": self.cut.to_dict(),
            "attacks": {k: r.to_dict() for k, r in self.attacks.items()},
            "latency": self.latency.to_dict(),
            "verdict": self.verdict.to_dict(),
            "confirmations": {k: r.to_dict() for k, r in self.confirmations.items()},
            "skipped": dict(self.skipped),
            "certified": None if self.certified is None else self.certified.to_dict(),
            "not_run": dict(self.not_run),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CutReport:
        return cls(
            cut=Cut.from_dict(d["cut"]),
            attacks={k: AttackResult.from_dict(r) for k, r in d["attacks"].items()},
            latency=CutProfile.from_dict(d["latency"]),
            verdict=Verdict.from_dict(d["verdict"]),
            confirmations={
                k: AttackResult.from_dict(r) for k, r in d.get("confirmations", {}).items()
            },
            skipped=dict(d.get("skipped", {})),
            certified=FisherBound.from_dict(d["certified"]) if d.get("certified") else None,
            not_run=dict(d.get("not_run", {})),
        )


@dataclass(frozen=True)
class SearchRecord:
    """How the audit chose which cuts to attack: the mode that ran, the cuts in the order they
    were attacked, how many attack runs that took, and why the mode differs from the one asked."""

    mode: str
    figures: str
    probes: tuple[str, ...]
    attack_runs: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in self.__dataclass_fields__},
                "probes": list(self.probes)}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchRecord:
        return cls(str(d["mode"]), str(d["figures"]), tuple(d["probes"]),
                   int(d["attack_runs"]), str(d.get("note", "")))  # fmt: skip


@dataclass(frozen=True)
class DefenceTrial:
    """One defended head tried by `--defend`: a defence at a strength at a cut, and its fate."""

    cut: str  # the cut the defence protects
    served_cut: str  # what crosses to the untrusted side (`<cut>.noise` for a bottleneck)
    method: str
    params: dict[str, Any]
    outcome: str  # "passes", "rejected", "too costly" (accuracy), "not run" (budget)
    reason: str
    accuracy: float | None = None
    base_accuracy: float | None = None
    total_ms: float | None = None
    certified: FisherBound | None = None
    checkpoint: str | None = None
    seconds: float = 0.0

    @property
    def accuracy_cost(self) -> float | None:
        """Points of test accuracy lost to the defence (positive = worse)."""
        if self.accuracy is None or self.base_accuracy is None:
            return None
        return 100 * (self.base_accuracy - self.accuracy)

    def describe(self) -> str:
        strength = ", ".join(f"{k} {v}" for k, v in self.params.items())
        text = f"{self.method} ({strength}) at {self.cut}"
        if self.accuracy_cost is not None:
            text += f": accuracy {self.accuracy_cost:+.1f} points".replace("+-", "-")
        if self.certified is not None:
            text += f", MSE >= {self.certified.mse_floor:.3g} certified for unbiased attackers"
        return f"{text}; {self.outcome}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["certified"] = None if self.certified is None else self.certified.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DefenceTrial:
        d = dict(d)
        d["certified"] = FisherBound.from_dict(d["certified"]) if d.get("certified") else None
        return cls(**d)


@dataclass
class DefenceProposal:
    """What `--defend` found when no undefended cut passed: every trial and the one chosen."""

    trials: list[DefenceTrial]
    chosen: DefenceTrial | None
    summary: str
    budget_minutes: float
    spent_minutes: float
    max_accuracy_drop: float  # points

    def to_dict(self) -> dict[str, Any]:
        return {
            "trials": [t.to_dict() for t in self.trials],
            "chosen": None if self.chosen is None else self.chosen.to_dict(),
            "summary": self.summary,
            "budget_minutes": self.budget_minutes,
            "spent_minutes": self.spent_minutes,
            "max_accuracy_drop": self.max_accuracy_drop,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DefenceProposal:
        chosen = d.get("chosen")
        return cls(
            trials=[DefenceTrial.from_dict(t) for t in d["trials"]],
            chosen=None if chosen is None else DefenceTrial.from_dict(chosen),
            summary=str(d["summary"]),
            budget_minutes=float(d["budget_minutes"]),
            spent_minutes=float(d["spent_minutes"]),
            max_accuracy_drop=float(d["max_accuracy_drop"]),
        )


@dataclass
class AuditResult:
    schema_version: int
    privpart_version: str
    created: str
    config: AuditConfig
    environment: dict[str, Any]  # provenance: versions, machine, executor
    model: dict[str, Any]  # spec, checkpoint path + hash, accuracy, training info
    data: dict[str, Any]  # dataset, kind, split sizes, feature names (tabular)
    cuts: list[CutReport]
    extremes: dict[str, CutProfile]  # whole_trusted / whole_untrusted
    selection: Selection
    stage_seconds: dict[str, float] = field(default_factory=dict)
    defence: dict | None = None
    proposal: DefenceProposal | None = None  # `--defend`: a defended split when none passed
    search: SearchRecord | None = None  # which cuts were attacked, and in what order

    @property
    def selected_cut(self) -> str | None:
        return self.selection.selected

    @property
    def verdicts(self) -> dict[str, Verdict]:
        """Every candidate's verdict by cut name (the whole-model-trusted option included)."""
        return dict(self.selection.verdicts)

    def cut(self, name: str) -> CutReport:
        for c in self.cuts:
            if c.name == name:
                return c
        raise PrivpartError(
            f"cut {name!r} was not audited", f"audited cuts: {', '.join(c.name for c in self.cuts)}"
        )

    def leakage(self, cut: str, attack: str) -> AttackResult:
        """The result of `attack` at `cut` (`.ssim`, `.metric("reid").estimate.interval`...)."""
        report = self.cut(cut)
        if attack not in report.attacks:
            raise PrivpartError(
                f"attack {attack!r} did not run at {cut}",
                f"attacks run there: {', '.join(report.attacks) or 'none'}",
            )
        return report.attacks[attack]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "privpart_version": self.privpart_version,
            "created": self.created,
            "config": self.config.to_dict(),
            "environment": self.environment,
            "model": self.model,
            "data": self.data,
            "cuts": [c.to_dict() for c in self.cuts],
            "extremes": {k: p.to_dict() for k, p in self.extremes.items()},
            "selection": self.selection.to_dict(),
            "selected_cut": self.selected_cut,
            "stage_seconds": self.stage_seconds,
            "defence": self.defence,
            "proposal": None if self.proposal is None else self.proposal.to_dict(),
            "search": None if self.search is None else self.search.to_dict(),
        }

    def save(self, path: Path) -> Path:
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuditResult:
        version = int(d.get("schema_version", 0))
        if version != SCHEMA_VERSION:
            newer = version > SCHEMA_VERSION
            raise PrivpartError(
                f"results schema {version} is {'newer' if newer else 'older'} than this "
                f"privpart's ({SCHEMA_VERSION})",
                "upgrade privpart to read it" if newer else "re-run the audit to regenerate it",
            )
        return cls(
            schema_version=SCHEMA_VERSION,
            privpart_version=str(d["privpart_version"]),
            created=str(d["created"]),
            config=AuditConfig.from_dict(d["config"]),
            environment=dict(d.get("environment", {})),
            model=dict(d["model"]),
            data=dict(d["data"]),
            cuts=[CutReport.from_dict(c) for c in d["cuts"]],
            extremes={k: CutProfile.from_dict(p) for k, p in d["extremes"].items()},
            selection=Selection.from_dict(d["selection"]),
            stage_seconds=dict(d.get("stage_seconds", {})),
            defence=d.get("defence"),
            proposal=DefenceProposal.from_dict(d["proposal"]) if d.get("proposal") else None,
            search=SearchRecord.from_dict(d["search"]) if d.get("search") else None,
        )

    @classmethod
    def load(cls, path: Path) -> AuditResult:
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise PrivpartError(f"{path} does not exist", "run `privpart audit` first") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise PrivpartError(
                f"{path} is not a privpart results.json: {type(exc).__name__}: {exc}",
                "re-run the audit to regenerate it",
            ) from exc
