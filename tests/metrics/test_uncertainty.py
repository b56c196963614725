from __future__ import annotations

import torch

from privpart.metrics.uncertainty import bootstrap


def _hits(n: int) -> torch.Tensor:
    return (torch.rand(n, generator=torch.Generator().manual_seed(n)) < 0.3).float()


def test_interval_holds_the_mean_and_shrinks_with_more_victims() -> None:
    widths = []
    for n in (16, 64, 256, 1024):
        e = bootstrap(_hits(n))
        assert e.n == n and e.interval is not None and e.interval.level == 0.95
        assert e.interval.low <= e.value <= e.interval.high
        widths.append(e.interval.high - e.interval.low)
    assert widths == sorted(widths, reverse=True)
    assert widths[-1] < widths[0] / 3  # ~1/sqrt(n): 8x the victims, a third of the width


def test_bootstrap_is_seeded_and_drops_undefined_values() -> None:
    v = torch.tensor([0.1, 0.5, float("nan"), 0.9])
    a, b = bootstrap(v, seed=3), bootstrap(v, seed=3)
    assert a == b and a.n == 3 and abs(a.value - 0.5) < 1e-6
    one = bootstrap(torch.tensor([0.7]))
    assert one.interval is None and abs(one.value - 0.7) < 1e-6
    assert bootstrap(torch.tensor([float("nan")])).n == 0
