from __future__ import annotations

import pytest
import torch

from privpart.metrics.reid import lineups, reidentification_hits


def _pool(n: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.arange(n) % 4


def test_perfect_reconstructions_reidentify_exactly() -> None:
    pool, labels = _pool()
    idx = torch.arange(100)
    hits, chance = reidentification_hits(pool[idx], pool, idx, labels, k=10)
    assert torch.equal(hits, torch.ones(100))
    assert torch.allclose(chance, torch.full((100,), 0.1))


def test_a_constant_reconstruction_scores_about_chance() -> None:
    pool, labels = _pool(4000)
    idx = torch.arange(2000)
    constant = torch.full((2000, 1, 8, 8), 0.5)
    hits, chance = reidentification_hits(constant, pool, idx, labels, k=10, seed=1)
    assert float(hits.mean()) == pytest.approx(0.1, abs=0.02)
    assert float(chance.mean()) == pytest.approx(0.1)


def test_lineups_hold_the_truth_first_and_only_its_label() -> None:
    _, labels = _pool(40)
    ups = lineups(torch.arange(40), labels, 40, k=10)
    for t, cand in enumerate(ups.candidates):
        assert cand[0] == t and len(set(cand.tolist())) == cand.numel() == 10
        assert bool((labels[cand] == labels[t]).all())
    # a label with too few members shrinks the line-up; one with none cannot be scored
    small = lineups(torch.tensor([0, 3]), torch.tensor([0, 0, 0, 1]), 4, k=10)
    assert [c.numel() for c in small.candidates] == [3, 1]
    assert small.chance[0] == pytest.approx(1 / 3) and torch.isnan(small.chance[1])


def test_ties_give_fractional_credit() -> None:
    pool = torch.zeros(5, 1, 2, 2)  # five identical candidates
    hits, _ = reidentification_hits(pool[:1], pool, torch.tensor([0]), k=5)
    assert float(hits[0]) == pytest.approx(0.2)
