from __future__ import annotations

import torch
from torch import nn

from privpart.partition import Partition
from privpart.profiling import ProfileConfig, profile_cuts, transfer_ms
from privpart.profiling.memory import peak_memory_bytes


class SlowHeadFastTail(nn.Module):
    """Head: several wide 3x3 convs at full resolution (heavy); tail: a pooled linear (trivial)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.head(x)), 1))


def test_slow_head_is_measured_slower_than_fast_tail() -> None:
    part = Partition(SlowHeadFastTail().eval(), (3, 64, 64))
    cfg = ProfileConfig(repeats=5, warmup=1, untrusted_threads=1)
    prof = profile_cuts(part, [part.cut("head")], cfg, show_progress=False)
    p = prof.cuts["head"]
    assert p.head.median_ms > 5 * p.tail.median_ms, (p.head, p.tail)
    assert p.total_ms == p.head_ms + p.transfer_ms + p.tail.median_ms
    # extremes: whole trusted has no tail, whole untrusted has no head
    assert prof.whole_trusted.tail.median_ms == 0 and prof.whole_untrusted.head.median_ms == 0
    assert prof.whole_untrusted.feature_bytes == 3 * 64 * 64 * 4


def test_enclave_slowdown_is_applied_and_reported() -> None:
    part = Partition(SlowHeadFastTail().eval(), (3, 16, 16))
    cfg = ProfileConfig(repeats=3, warmup=1, enclave_slowdown=3.0)
    prof = profile_cuts(part, [part.cut("head")], cfg, False)
    p = prof.cuts["head"]
    assert abs(p.head_ms - 3.0 * p.head.median_ms) < 1e-9
    assert prof.to_dict()["enclave_slowdown_applied"] is True


def test_transfer_model() -> None:
    cfg = ProfileConfig(bandwidth_mbit_s=8.0, link_latency_ms=1.0)
    assert abs(transfer_ms(1_000_000, cfg) - 1001.0) < 1e-6


def test_peak_memory_counts_weights_and_live_activations() -> None:
    part = Partition(SlowHeadFastTail().eval(), (3, 8, 8))
    head = part.split("head").head
    mem = peak_memory_bytes(head, torch.rand(1, 3, 8, 8))
    weights = sum(p.numel() * 4 for p in head.parameters())
    assert mem["weights"] == weights
    # at least input + one 64x8x8 activation alive at once
    assert mem["activations"] >= (3 + 64) * 8 * 8 * 4
    assert mem["total"] == mem["weights"] + mem["activations"]


def test_memory_budget_has_one_home_and_old_profiles_still_load() -> None:
    """The head's memory budget is a limit (Constraints.memory_budget_bytes), not a profiling
    setting; a profile saved when it was both (`fits_epc` per cut) still loads."""
    from dataclasses import fields

    from privpart.profiling import CutProfile
    from privpart.selection import Constraints

    assert not [f.name for f in fields(ProfileConfig) if "epc" in f.name or "memory" in f.name]
    part = Partition(SlowHeadFastTail().eval(), (3, 8, 8))
    cfg = ProfileConfig(repeats=3, warmup=1, untrusted_threads=1)
    p = profile_cuts(part, [part.cut("head")], cfg, False).cuts["head"]
    total = p.head_memory["total"]
    assert p.fits(Constraints().memory_budget_bytes)
    assert p.fits(total) and not p.fits(total - 1)
    old = CutProfile.from_dict({**p.to_dict(), "fits_epc": True})
    assert old.head_memory == p.head_memory and "fits_epc" not in old.to_dict()
