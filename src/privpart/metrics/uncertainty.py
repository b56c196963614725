"""Uncertainty of a leakage figure: a percentile bootstrap over victims.

Every figure is a mean over per-victim values (SSIM of one reconstruction, a re-identification
hit, a correct attribute guess). Resampling victims with replacement and taking the 2.5th and
97.5th percentiles of the resampled means gives the 95 % interval the verdicts read: a cut
whose interval straddles its limit is borderline. Seeded, so a result is reproducible.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from privpart.metrics.spec import Estimate, Interval

RESAMPLES = 2000
LEVEL = 0.95


def bootstrap(
    values: Tensor, seed: int = 0, resamples: int = RESAMPLES, level: float = LEVEL
) -> Estimate:
    """The mean of `values` (one per victim) with its percentile-bootstrap interval.

    NaNs (a metric undefined for some victim) are dropped first; with fewer than two values
    the interval is not formed.
    """
    v = values.detach().double().flatten()
    v = v[~torch.isnan(v)]
    n = int(v.numel())
    if n == 0:
        return Estimate(float("nan"), None, 0)
    mean = float(v.mean())
    if n < 2:
        return Estimate(mean, None, n)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (resamples, n), generator=g)
    means = v[idx].mean(1)
    tail = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=means.dtype)).tolist()
    # the interval always holds the estimate (percentiles of a skewed statistic may not)
    low, high = min(low, mean), max(high, mean)
    return Estimate(mean, Interval(low if math.isfinite(low) else mean,
                                   high if math.isfinite(high) else mean, level), n)  # fmt: skip
