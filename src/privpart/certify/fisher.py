"""Fisher-information leakage (dFIL) of a noisy head and the reconstruction bound it certifies
(Maeng et al., NeurIPS 2023).

A head that ends in Gaussian noise releases z = g(x) + e, e ~ N(0, diag(s^2)), where g is the
deterministic part up to the noise and s its per-element standard deviation. The Fisher
information the release carries about the input x is

    I(x) = J(x)^T diag(1 / s^2) J(x),        J = dg/dx,

and its mean diagonal dFIL(x) = tr I(x) / d (d = input values). For any *unbiased* estimate
x^ of x from z (Cramer-Rao: Cov >= I^-1; tr I^-1 >= d^2 / tr I),

    E ||x^ - x||^2 / d  >=  1 / dFIL(x),

so 1/dFIL is a floor on the per-pixel MSE of every unbiased reconstruction, whatever its
algorithm, and 10 log10(1/MSE floor) a ceiling on its PSNR (images in [0, 1]). The bound is
*certified* (a theorem), not *empirical* (an attack's figure); it covers unbiased attackers
only. An attacker with an image prior is biased and may go below it (the van Trees form adds
the prior's Fisher information, which is infinite for images with exact-zero backgrounds such
as Fashion-MNIST's, so privpart states the unbiased form and shows the prior attacks beside it).

tr I(x) = ||diag(1/s) J||_F^2 is computed exactly (`torch.func.jacrev`, CHUNK rows at a time)
when the code has at most EXACT_LIMIT values, else by Hutchinson's unbiased estimator
E_u ||diag(1/s) J u||^2, u ~ N(0, I), with forward-mode products (`torch.func.jvp`); the bound
then uses the estimate's upper 97.5 % confidence limit, so it errs on the side of less
certified privacy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, fx, nn
from torch.func import jacrev, jvp, vmap

from privpart.models.wrappers import CutNoise

EXACT_LIMIT = 512  # outputs per sample up to which the Jacobian is computed exactly
CHUNK = 16  # Jacobian rows (or probes) per vectorised pass: memory is CHUNK x activations
PROBES = 64  # Hutchinson probes per sample otherwise
Z_UPPER = 1.96  # one-sided 97.5 % limit on the trace estimate


@dataclass(frozen=True)
class FisherBound:
    """The certified figure of one cut: dFIL over victims and the MSE floor it implies."""

    dfil: float  # mean over victims of tr I(x) / d
    mse_floor: float  # mean over victims of 1 / dFIL(x): floor on an unbiased attacker's MSE
    mse_floor_worst: float  # the smallest per-victim floor (the least protected victim)
    psnr_ceiling_db: float  # 10 log10(1 / mse_floor): ceiling on an unbiased attacker's PSNR
    victims: int
    method: str  # "exact" or "hutchinson-<probes>"
    noise: str  # the noise module the bound is about
    sigma: float
    covers: str = "unbiased attackers (Cramer-Rao)"
    kind: str = "certified"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FisherBound:
        return cls(**d)

    def describe(self) -> str:
        return (
            f"certified: MSE >= {self.mse_floor:.4f} (PSNR <= {self.psnr_ceiling_db:.1f} dB) for "
            f"{self.covers}; dFIL {self.dfil:.3g}, {self.method}, {self.victims} victims"
        )


def noise_site(head: fx.GraphModule) -> tuple[fx.GraphModule, CutNoise, str] | None:
    """(the head up to its noise, the noise module, its path), or None for a noiseless head.

    Everything the head computes after the noise is a function of the noisy value, so by data
    processing its Fisher information is no larger: the bound holds at every cut after it."""
    sites = [
        n for n in head.graph.nodes
        if n.op == "call_module" and isinstance(head.get_submodule(str(n.target)), CutNoise)
    ]  # fmt: skip
    if len(sites) != 1:
        return None  # none (deterministic: no finite bound), or several (not covered here)
    node = sites[0]
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for n in head.graph.nodes:
        if n is node:
            graph.output(env[node.args[0]])
            break
        env[n] = graph.node_copy(n, lambda m: env[m])
    pre = fx.GraphModule(head, graph, "PreNoise")
    pre.graph.eliminate_dead_code()
    pre.recompile()
    return pre.eval(), head.get_submodule(str(node.target)), str(node.target)


def fisher_trace(
    pre: nn.Module, std: Tensor, x: Tensor, probes: int = PROBES, seed: int = 0
) -> tuple[Tensor, str]:
    """Per sample tr(J^T diag(1/std^2) J) of `pre` at `x` (N, ...), as an upper estimate where
    not exact, and the method used."""

    def whitened(one: Tensor) -> Tensor:
        return (pre(one.unsqueeze(0)).squeeze(0) / std).reshape(-1)

    with torch.no_grad():
        m = pre(x[:1]).numel()
    if m <= EXACT_LIMIT:
        out = [jacrev(whitened, chunk_size=CHUNK)(one).pow(2).sum() for one in x]
        return torch.stack(out).detach().double(), "exact"
    g = torch.Generator().manual_seed(seed)
    traces = []
    for one in x:
        u = torch.randn(probes, *one.shape, generator=g, dtype=one.dtype)
        tangents = vmap(lambda t, one=one: jvp(whitened, (one,), (t,))[1], chunk_size=CHUNK)(u)
        sq = tangents.pow(2).sum(1).double()  # ||J u||^2 per probe: unbiased for the trace
        traces.append(sq.mean() + Z_UPPER * sq.std() / math.sqrt(probes))
    return torch.stack(traces).detach(), f"hutchinson-{probes}"


def certify(head: fx.GraphModule, x: Tensor) -> FisherBound | None:
    """The certified reconstruction bound of a noisy head at inputs `x` (victims), or None
    when the head adds no Gaussian noise (a deterministic head certifies nothing)."""
    site = noise_site(head)
    if site is None:
        return None
    pre, noise, path = site
    sigma = float(noise.sigma)
    if sigma <= 0:
        return None
    x = x.detach().float().to(noise.scale.device)
    with torch.no_grad():
        shape = pre(x[:1]).shape[1:]
    std = (noise.scale.float() * sigma).expand(1, *shape).squeeze(0)
    trace, method = fisher_trace(pre, std, x)
    d = x[0].numel()
    dfil = trace / d
    floors = 1.0 / dfil.clamp_min(1e-300)
    floor = float(floors.mean())
    return FisherBound(
        dfil=float(dfil.mean()),
        mse_floor=floor,
        mse_floor_worst=float(floors.min()),
        psnr_ceiling_db=10 * math.log10(1.0 / floor) if floor > 0 else float("inf"),
        victims=int(x.shape[0]),
        method=method,
        noise=path,
        sigma=sigma,
    )
