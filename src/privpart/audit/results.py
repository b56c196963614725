"""The audit's typed result; results.json is its serialised form and the report's only input."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from privpart.errors import PrivpartError

SCHEMA_VERSION = 1


@dataclass
class CutReport:
    """One audited cut: where it is, what each attack achieved, what it costs, the verdict."""

    cut: dict  # privpart.partition.Cut.to_dict()
    attacks: dict[str, dict]  # attack -> AttackResult.to_dict() (+ "grid", "cached")
    latency: dict  # privpart.profiling.CutProfile.to_dict()
    verdict: dict  # {"status": selected|rejected|passes, "reason": str}

    @property
    def name(self) -> str:
        return self.cut["name"]


@dataclass
class AuditResult:
    schema_version: int
    privpart_version: str
    created: str
    config: dict
    environment: dict
    model: dict  # spec, checkpoint path + hash, accuracy, training info
    data: dict  # dataset, kind, split sizes, feature names (tabular)
    cuts: list[CutReport]
    extremes: dict[str, dict]  # whole_trusted / whole_untrusted -> CutProfile dict
    selection: dict  # privpart.selection.Selection.to_dict()
    selected_cut: str | None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    defence: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def from_dict(cls, d: dict) -> AuditResult:
        d = dict(d)
        d["cuts"] = [CutReport(**c) for c in d["cuts"]]
        return cls(**d)

    @classmethod
    def load(cls, path: Path) -> AuditResult:
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise PrivpartError(f"{path} does not exist", "run `privpart audit` first") from None
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise PrivpartError(
                f"{path} is not a privpart results.json: {exc}", "re-run the audit to regenerate it"
            ) from exc
