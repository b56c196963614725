"""`nopeek`: task loss + alpha * distance correlation between the inputs and the cut features
(Vepakomma et al. 2020, "NoPEEK: information leakage reduction to share activations").

    min_{head, tail}  CE(g(f), y) + alpha * dCor(x, f),   f = head(x), over each batch

Distance correlation (Szekely et al. 2007) is zero iff x and f are independent and, unlike a
correlation coefficient, sees non-linear dependence; it needs no adversary, so it is cheap and
stable, but it measures dependence on the whole input rather than on any one attacker's view.
Per batch of n: A, B are the double-centred pairwise Euclidean distance matrices of the
flattened x and f, and dCor^2 = mean(A*B) / sqrt(mean(A*A) * mean(B*B)); we penalise dCor.
This is the paper's (V-statistic) estimator: biased upwards for high-dimensional batches, so the
logged value stays well above 0 even for independent data; its gradient still points towards
independence. Leakage is judged by the audit's attacks, not by this number.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from privpart.defences.base import Defence, DefenceContext
from privpart.defences.registry import DEFENCES
from privpart.params import Param


def _centred_distances(z: Tensor) -> Tensor:
    z = z.flatten(1).float()
    norms = z.pow(2).sum(1)
    sq = norms.unsqueeze(1) + norms.unsqueeze(0) - 2 * z @ z.T  # Gram form: no n x n x d tensor
    d = sq.clamp_min(1e-12).sqrt() * (1 - torch.eye(z.shape[0], dtype=z.dtype))  # 0 diagonal
    return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()


def distance_correlation(x: Tensor, f: Tensor) -> Tensor:
    """Sample distance correlation in [0, 1] between two batches (rows are samples)."""
    a, b = _centred_distances(x), _centred_distances(f)
    dcov2 = (a * b).mean()
    denom = ((a * a).mean() * (b * b).mean()).clamp_min(1e-24).sqrt()
    return (dcov2.clamp_min(0) / denom).clamp_min(1e-12).sqrt()


@DEFENCES.register("nopeek")
class NoPeekDefence(Defence):
    name: ClassVar[str] = "nopeek"
    summary: ClassVar[str] = "task loss + alpha * distance correlation(inputs, cut features)"
    params: ClassVar[dict[str, Param]] = {
        "alpha": Param(0.5, "weight of the distance-correlation penalty", float, 0.0),
    }

    def loss(self, ctx: DefenceContext, x: Tensor, y: Tensor, idx: Tensor) -> tuple[Tensor, dict]:
        f = ctx.split.head(x)
        dcor = distance_correlation(x, f)
        task = F.cross_entropy(ctx.split.tail(f.clone()), y)  # clone: the tail may be in-place
        return task + self.values["alpha"] * dcor, {"task": task.item(), "dcor": dcor.item()}
