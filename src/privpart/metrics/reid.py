"""Re-identification: can a reconstruction pick its own input out of a line-up?

For each scored victim, the line-up is the victim plus up to k - 1 other victims *of the same
task label* (drawn with a seeded generator from the whole victim split), and the attacker picks
the candidate nearest to its reconstruction (mean squared pixel error). A hit means the
reconstruction says which input it was, beyond what its class says. Chance is 1 / (line-up
size); a victim with no same-label companion has no line-up and is not scored (NaN). Exact ties
(duplicate images) give fractional credit, so a constant reconstruction scores chance on
average and a perfect one scores exactly 1.

SSIM against a fixed margin cannot tell a class prototype from the input itself; this can:
near-prototype reconstructions re-identify at about chance, faithful ones far above it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

DEFAULT_K = 10


@dataclass(frozen=True)
class Lineups:
    """Per scored victim: candidate indices into the pool (the true one first) and chance."""

    candidates: list[Tensor]

    @property
    def chance(self) -> Tensor:
        return torch.tensor(
            [1.0 / c.numel() if c.numel() > 1 else float("nan") for c in self.candidates]
        )


def lineups(
    truth_index: Tensor, labels: Tensor | None, pool_size: int, k: int = DEFAULT_K, seed: int = 0
) -> Lineups:
    """Line-ups for the victims at `truth_index` (positions in a pool of `pool_size` inputs)."""
    g = torch.Generator().manual_seed(seed)
    everyone = torch.arange(pool_size)
    out: list[Tensor] = []
    for t in truth_index.tolist():
        same = everyone if labels is None else everyone[labels == labels[t]]
        others = same[same != t]
        pick = others[torch.randperm(others.numel(), generator=g)[: max(k - 1, 0)]]
        out.append(torch.cat([torch.tensor([t]), pick]))
    return Lineups(out)


def reidentification_hits(
    reconstructions: Tensor,
    pool: Tensor,
    truth_index: Tensor,
    labels: Tensor | None = None,
    k: int = DEFAULT_K,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """(hit per victim in [0, 1] or NaN, chance per victim) for `reconstructions[i]` of
    `pool[truth_index[i]]`, line-ups of `k` same-label candidates drawn from `pool`."""
    ups = lineups(truth_index, labels, pool.shape[0], k, seed)
    hits = torch.full((len(ups.candidates),), float("nan"))
    flat_pool = pool.detach().float().flatten(1)
    flat_rec = reconstructions.detach().float().flatten(1).to(flat_pool.device)
    for i, cand in enumerate(ups.candidates):
        if cand.numel() < 2:
            continue
        dist = (flat_pool[cand] - flat_rec[i]).pow(2).mean(1)
        nearest = dist == dist.min()
        hits[i] = float(nearest[0]) / float(nearest.sum())
    return hits, ups.chance
