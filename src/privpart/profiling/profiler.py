"""Per-cut cost of split inference: head on the trusted device, feature transfer, tail on the
accelerator, plus the two extremes (whole model trusted / whole model untrusted)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from privpart.partition import Cut, Partition
from privpart.profiling.memory import peak_memory_bytes
from privpart.profiling.timing import Timing, time_module
from privpart.ui import progress


@dataclass(frozen=True)
class ProfileConfig:
    """How to time. Defaults stand in for an SGX enclave on one core next to a GPU over 1 Gbit/s.

    `enclave_slowdown` multiplies measured head latency for users profiling outside a real
    enclave (SGX costs range from ~1.1x when the head fits in EPC to several x when it pages);
    1.0 means not applied, and results say so.

    The head's memory budget is not here: it decides which cuts are acceptable, so it lives
    with the other limits, `Constraints.memory_budget_bytes` (`CutProfile.fits` compares).
    """

    trusted_threads: int = 1
    untrusted_device: str = "auto"  # "auto" -> cuda if available else cpu
    untrusted_threads: int | None = None  # CPU fallback: all cores
    bandwidth_mbit_s: float = 1000.0
    link_latency_ms: float = 0.5
    batch_size: int = 1
    warmup: int = 3
    repeats: int = 15
    max_seconds_per_part: float = 10.0
    enclave_slowdown: float = 1.0

    def resolved_device(self) -> str:
        if self.untrusted_device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.untrusted_device

    def to_dict(self) -> dict:
        return asdict(self)


def transfer_ms(n_bytes: int, cfg: ProfileConfig) -> float:
    """Time to move `n_bytes` over the configured link: latency + bytes / bandwidth."""
    return cfg.link_latency_ms + n_bytes * 8 / (cfg.bandwidth_mbit_s * 1e6) * 1000


@dataclass
class CutProfile:
    cut: str
    head: Timing
    tail: Timing
    transfer_ms: float
    feature_bytes: int
    head_memory: dict[str, int]
    enclave_slowdown: float

    @property
    def head_ms(self) -> float:
        return self.head.median_ms * self.enclave_slowdown

    @property
    def total_ms(self) -> float:
        return self.head_ms + self.transfer_ms + self.tail.median_ms

    def fits(self, budget_bytes: int) -> bool:
        """Whether the head (weights + peak activations) fits `budget_bytes`, the audit's
        `Constraints.memory_budget_bytes`."""
        return self.head_memory["total"] <= budget_bytes

    def to_dict(self) -> dict:
        return {
            "cut": self.cut,
            "head": self.head.to_dict(),
            "tail": self.tail.to_dict(),
            "head_ms": self.head_ms,
            "tail_ms": self.tail.median_ms,
            "transfer_ms": self.transfer_ms,
            "total_ms": self.total_ms,
            "feature_bytes": self.feature_bytes,
            "head_memory": self.head_memory,
            "enclave_slowdown": self.enclave_slowdown,
        }

    @classmethod
    def from_dict(cls, d: dict) -> CutProfile:
        return cls(
            cut=d["cut"],
            head=Timing.from_dict(d["head"]),
            tail=Timing.from_dict(d["tail"]),
            transfer_ms=d["transfer_ms"],
            feature_bytes=d["feature_bytes"],
            head_memory=d["head_memory"],
            enclave_slowdown=d["enclave_slowdown"],
        )


@dataclass
class ProfileResult:
    cuts: dict[str, CutProfile]
    whole_trusted: CutProfile  # the output cut: everything in the enclave, logits leave
    whole_untrusted: CutProfile  # the input cut: the raw input is sent to the accelerator
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "cuts": {k: v.to_dict() for k, v in self.cuts.items()},
            "whole_trusted": self.whole_trusted.to_dict(),
            "whole_untrusted": self.whole_untrusted.to_dict(),
            "config": self.config,
            "enclave_slowdown_applied": self.config.get("enclave_slowdown", 1.0) != 1.0,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ProfileResult:
        return cls(
            cuts={k: CutProfile.from_dict(v) for k, v in d["cuts"].items()},
            whole_trusted=CutProfile.from_dict(d["whole_trusted"]),
            whole_untrusted=CutProfile.from_dict(d["whole_untrusted"]),
            config=d.get("config", {}),
        )


def _identity_timing(device: str) -> Timing:
    return Timing.zero(device)


def profile_cut(part: Partition, cut: Cut, cfg: ProfileConfig) -> CutProfile:
    """Time one cut's head (trusted CPU) and tail (accelerator); model the transfer."""
    x = torch.rand(cfg.batch_size, *part.input_shape, generator=torch.Generator().manual_seed(0))
    s = part.split(cut)
    device = cfg.resolved_device()
    kw = dict(warmup=cfg.warmup, repeats=cfg.repeats, max_seconds=cfg.max_seconds_per_part)
    with torch.no_grad():
        feats = s.head.eval()(x)
    head_t = (
        _identity_timing("cpu")
        if cut.position == "input"
        else time_module(s.head, x, "cpu", cfg.trusted_threads, **kw)
    )
    if cut.position == "output":
        tail_t = _identity_timing(device)
    else:
        tail_t = time_module(s.tail, feats, device, cfg.untrusted_threads, **kw)
        s.tail.to("cpu")
    n_bytes = feats.numel() * feats.element_size()
    mem = (
        peak_memory_bytes(s.head, x)
        if cut.position != "input"
        else {"weights": 0, "activations": 0, "total": 0}
    )
    return CutProfile(
        cut=cut.name,
        head=head_t,
        tail=tail_t,
        transfer_ms=transfer_ms(n_bytes, cfg),
        feature_bytes=n_bytes,
        head_memory=mem,
        enclave_slowdown=cfg.enclave_slowdown,
    )


def profile_cuts(
    part: Partition, cuts: list[Cut], cfg: ProfileConfig, show_progress: bool = True
) -> ProfileResult:
    """Profile every cut in `cuts` and both extremes."""
    first, last = part.cuts[0], part.cuts[-1]
    todo = [*cuts, first, last]
    out: dict[str, CutProfile] = {}
    with progress(transient=True, disable=not show_progress) as bar:
        task = bar.add_task("profiling", total=len(todo), info="")
        for cut in todo:
            bar.update(task, info=cut.name)
            if cut.name not in out:
                out[cut.name] = profile_cut(part, cut, cfg)
            bar.advance(task)
    whole_untrusted, whole_trusted = out[first.name], out[last.name]
    chosen = {c.name: out[c.name] for c in cuts}
    return ProfileResult(
        chosen,
        whole_trusted,
        whole_untrusted,
        {**cfg.to_dict(), "resolved_device": cfg.resolved_device()},
    )
