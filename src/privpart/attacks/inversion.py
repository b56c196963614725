"""White-box inversion core: inputs in the box [0, 1] whose head features match given targets.

    x* = argmin_{x in [0, 1]^d}  ||head(x) - f||^2 / ||f||^2  +  tv * TV(x)

(He et al., ACSAC 2019, "regularised maximum likelihood"). What makes it reach *exact*
inversion where the head is invertible:

- projected Adam in pixel space: a step, then a clamp to the box. Exact 0 and 1 pixels (the
  background of most images) are reachable, which a sigmoid parametrisation never gets to;
- the feature distance is normalised by ||f||^2 per target, so one learning rate and one TV
  scale fit every cut;
- restarts: every target starts from several points (its nearest aux image in feature space,
  the aux mean, the next neighbours, noise); after a warm-up share of the steps each target keeps
  the start with the lowest objective (the attack's own measure: the victim is never looked at)
  and spends the rest of the budget on it;
- the TV weight is chosen on aux images only (`choose_tv`): the attacker inverts the features of
  some of its own aux images under each candidate weight, with the same procedure and step
  count as the real run, and keeps the weight whose reconstructions score the best SSIM against
  those known inputs. Where the head is invertible this picks a weight at or near 0; where the
  cut discards information (deep cuts, defended heads) it picks the prior the cut needs.

Everything runs on the head's device; gradients are taken w.r.t. the input only
(`torch.autograd.grad`), so the head's weights are never touched.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from privpart.attacks.base import Clock, cosine_lr
from privpart.metrics import ssim
from privpart.params import Param

# The per-victim optimisations (whitebox, prior) score only the first victims by default.
VICTIMS = Param(
    64, "victims inverted and scored (the first ones); none = all", int, 1, optional=True
)

DEFAULT_TV_WEIGHTS = (0.0, 1e-3, 1e-2, 5e-2)


def total_variation(x: Tensor) -> Tensor:
    """Per-image mean absolute difference of neighbouring pixels (anisotropic TV)."""
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().flatten(1).mean(1)
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


def feature_norms(targets: Tensor) -> Tensor:
    """||f||^2 per target (floored): the normaliser of the feature distance."""
    return targets.flatten(1).float().pow(2).sum(1).clamp_min(1e-12)


def module_device(module: nn.Module, default: torch.device | str = "cpu") -> torch.device:
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device(default)


@dataclass
class Inversion:
    """What one inversion run produced."""

    images: Tensor  # (n, C, H, W) in [0, 1], on the device of the run
    objective: Tensor  # (n,) final objective (feature distance + tv * TV) per target
    distance: Tensor  # (n,) final normalised feature distance per target
    restart: Tensor  # (n,) index of the starting point each target kept
    steps: int
    seconds: float
    info: dict = field(default_factory=dict)

    def summary(self) -> dict:
        d = self.distance.detach().float().cpu()
        return {
            "steps": self.steps,
            "seconds": self.seconds,
            "feature_distance_median": float(d.median()) if d.numel() else float("nan"),
            "feature_distance_max": float(d.max()) if d.numel() else float("nan"),
            "restart_counts": torch.bincount(self.restart.cpu(), minlength=1).tolist(),
            **self.info,
        }


@dataclass(frozen=True)
class Space:
    """Where the search happens. Pixels (the default): the variable is the image, projected onto
    the box [0, 1] after every step. A latent space: `render` maps the variable to an image
    (a generator), `penalty` keeps it likely under the prior (per sample), no projection."""

    render: Callable[[Tensor], Tensor] | None = None
    penalty: Callable[[Tensor], Tensor] | None = None
    box: bool = True

    def image(self, v: Tensor) -> Tensor:
        return v if self.render is None else self.render(v)


PIXELS = Space()


def _objective(
    head: nn.Module, v: Tensor, target: Tensor, norm: Tensor, tv: Tensor, space: Space
) -> tuple[Tensor, Tensor]:
    """(objective, feature distance), each (batch,)."""
    x = space.image(v)
    dist = (head(x) - target).flatten(1).pow(2).sum(1) / norm
    obj = dist + tv * total_variation(x)
    if space.penalty is not None:
        obj = obj + space.penalty(v)
    return obj, dist


def _narrow(
    opt: torch.optim.Adam, params: list[Tensor], index: Tensor, chunk: int, lr: float
) -> tuple[list[Tensor], torch.optim.Adam]:
    """Rows `index` of the chunked parameters, re-chunked, with a new Adam that carries their
    moments and step count over (the survivors continue where they were, not from scratch)."""
    kept = torch.cat([p.detach() for p in params])[index]
    new = [kept[i : i + chunk].clone().requires_grad_(True) for i in range(0, len(kept), chunk)]
    new_opt = torch.optim.Adam(new, lr=lr)
    states = [opt.state.get(p, {}) for p in params]
    if all(states):
        moments = {k: torch.cat([s[k] for s in states])[index] for k in ("exp_avg", "exp_avg_sq")}
        for j, p in enumerate(new):
            rows = slice(j * chunk, j * chunk + p.shape[0])
            new_opt.state[p] = {"step": states[0]["step"].clone(),
                                **{k: v[rows].clone() for k, v in moments.items()}}  # fmt: skip
    return new, new_opt


def invert(
    head: nn.Module,
    targets: Tensor,
    starts: Tensor,
    clock: Clock,
    tv: float | Tensor = 0.0,
    lr: float = 0.05,
    warmup: float = 0.15,
    chunk: int = 128,
    on_step: Callable[[int, float], None] | None = None,
    space: Space = PIXELS,
) -> Inversion:
    """Invert `targets` (n, *feature_shape) through `head` from `starts` (R, n, *variable):
    images (R, n, C, H, W) in pixel space, latents (R, n, d) in a generator's latent space.

    All R starting points of every target run for the first `warmup` share of the budget
    (whichever of the clock's time and steps runs out first); then each target keeps its
    restart with the lowest objective and runs on alone. `tv` is one weight or one per target.
    The learning rate follows one cosine schedule over the whole clock.
    """
    started = time.perf_counter()
    device = targets.device
    R, n = starts.shape[0], starts.shape[1]
    targets = targets.float()
    norm1 = feature_norms(targets)
    tv1 = torch.as_tensor(tv, dtype=torch.float32, device=device).expand(n).clone()
    # restart-major layout: row r * n + i is restart r of target i
    rep = (lambda t: t.repeat(R, *([1] * (t.dim() - 1)))) if R > 1 else (lambda t: t)
    tgt, norm, tvw = rep(targets), rep(norm1), rep(tv1)
    which = torch.arange(R, device=device).repeat_interleave(n)
    x0 = starts.reshape(R * n, *starts.shape[2:]).to(device).float()
    x0 = x0.clamp(0, 1) if space.box else x0
    xs = [x0[i : i + chunk].clone().requires_grad_(True) for i in range(0, R * n, chunk)]
    opt = torch.optim.Adam(xs, lr=lr)
    head.eval()
    obj = torch.full((R * n,), float("inf"), device=device)
    narrowed = R == 1
    while not clock.done:
        if not narrowed and clock.fraction >= warmup:
            best = obj.view(R, n).argmin(0)  # per target: the restart with the lowest objective
            index = best * n + torch.arange(n, device=device)
            xs, opt = _narrow(opt, xs, index, chunk, lr)
            tgt, norm, tvw = tgt[index], norm[index], tvw[index]
            which, obj = which[index], obj[index]
            narrowed = True
        rate = cosine_lr(lr, clock.fraction)
        for group in opt.param_groups:
            group["lr"] = rate
        pos = 0
        for x in xs:
            b = x.shape[0]
            sl = slice(pos, pos + b)
            o, _ = _objective(head, x, tgt[sl], norm[sl], tvw[sl], space)
            (x.grad,) = torch.autograd.grad(o.sum(), [x])
            obj[sl] = o.detach()
            pos += b
        opt.step()
        if space.box:
            with torch.no_grad():
                for x in xs:
                    x.clamp_(0, 1)  # the projection onto the box
        clock.tick()
        if on_step is not None:
            on_step(clock.step, float(obj.mean()))
    if not narrowed:  # the budget ended inside the warm-up: still pick by the objective
        best = obj.view(R, n).argmin(0)
        index = best * n + torch.arange(n, device=device)
        xs = [torch.cat([x.detach() for x in xs])[index]]
        which = which[index]
    with torch.no_grad():  # the objective of the final (projected) variables
        v = torch.cat([x.detach() for x in xs])
        finals = [_objective(head, v[i : i + chunk], targets[i : i + chunk],
                             norm1[i : i + chunk], tv1[i : i + chunk], space)
                  for i in range(0, n, chunk)]  # fmt: skip
        obj = torch.cat([f[0] for f in finals])
        dist = torch.cat([f[1] for f in finals])
        images = torch.cat([space.image(v[i : i + chunk]) for i in range(0, n, chunk)])
    return Inversion(images, obj, dist, which, clock.step, time.perf_counter() - started)


def starting_points(
    targets: Tensor,
    pool_inputs: Tensor,
    pool_features: Tensor,
    restarts: int,
    seed: int = 0,
) -> Tensor:
    """(restarts, n, C, H, W) starts per target, best guesses first: the pool image whose
    features are nearest the target's (normalised distance), the pool mean, the 2nd/3rd
    neighbours, then uniform noise. The pool is the attacker's own aux data."""
    n = targets.shape[0]
    device = targets.device
    pool_inputs = pool_inputs.to(device).float()
    mean = pool_inputs.mean(0, keepdim=True).expand(n, *pool_inputs.shape[1:])
    t = targets.flatten(1).float()
    p = pool_features.to(device).flatten(1).float()
    d = torch.cdist(t, p).pow(2) / feature_norms(targets).unsqueeze(1)
    k = min(3, p.shape[0])
    nearest = d.topk(k, dim=1, largest=False).indices  # (n, k)
    g = torch.Generator(device="cpu").manual_seed(seed)
    order: list[Tensor] = [pool_inputs[nearest[:, 0]], mean]
    order += [pool_inputs[nearest[:, j]] for j in range(1, k)]
    while len(order) < restarts:
        order.append(torch.rand(n, *pool_inputs.shape[1:], generator=g).to(device))
    return torch.stack(order[:restarts])


@dataclass
class TVChoice:
    weight: float
    scores: dict[float, float]  # candidate -> aux SSIM
    images: int
    steps: int
    seconds: float


def choose_tv(
    head: nn.Module,
    tune_inputs: Tensor,
    tune_features: Tensor,
    pool_inputs: Tensor,
    pool_features: Tensor,
    candidates: tuple[float, ...],
    clock: Clock,
    restarts: int,
    lr: float,
    warmup: float,
    seed: int = 0,
    chunk: int = 128,
) -> TVChoice:
    """The TV weight whose inversions of the attacker's own aux images (`tune_*`, not in the
    pool the starting points come from) best match those images, all candidates in one batch."""
    started = time.perf_counter()
    k, G = tune_inputs.shape[0], len(candidates)
    targets = tune_features.repeat(G, *([1] * (tune_features.dim() - 1)))
    tv = torch.tensor(candidates, device=targets.device).repeat_interleave(k)
    starts = starting_points(targets, pool_inputs, pool_features, restarts, seed)
    run = invert(head, targets, starts, clock, tv, lr, warmup, chunk)
    truth = tune_inputs.to(run.images.device).float()
    scores: dict[float, float] = {}
    for j, w in enumerate(candidates):
        s = ssim(run.images[j * k : (j + 1) * k].cpu(), truth.cpu())
        scores[w] = (
            s
            if math.isfinite(s)
            else -float((run.images[j * k : (j + 1) * k] - truth).abs().mean())
        )
    best = max(candidates, key=lambda w: (scores[w], -w))
    return TVChoice(best, scores, k, run.steps, time.perf_counter() - started)


@dataclass(frozen=True)
class InversionSettings:
    """The white-box inversion's knobs (defaults measured on the quickstart VGG-16; see
    docs/attacks.md). `restarts` starting points per target race for `warmup` of the budget;
    `tune_images` aux images x `tv_weights` candidates choose the TV weight first."""

    lr: float = 0.1
    restarts: int = 2
    warmup: float = 0.1
    tv_weights: tuple[float, ...] = DEFAULT_TV_WEIGHTS
    tune_images: int = 4
    chunk: int = 128


class Phases:
    """A budget shared by phases that run one after the other. Each phase may run `steps`
    steps (the phases mimic each other step for step); a wall-clock budget is handed out when a
    phase starts: the time left, in proportion to that phase's share of the shares left, so
    time a phase does not use (it hit its step cap) goes to the phases after it."""

    def __init__(self, seconds: float | None, steps: int, shares: tuple[float, ...]) -> None:
        self.seconds, self.steps, self.shares = seconds, steps, list(shares)
        self.start = time.perf_counter()
        self.index = 0

    def next(self) -> Clock:
        """The clock of the next phase, started now."""
        share, rest = self.shares[self.index], sum(self.shares[self.index :])
        self.index += 1
        if self.seconds is None:
            return Clock(None, self.steps)
        left = max(1e-3, self.seconds - (time.perf_counter() - self.start))
        return Clock(left * share / rest, self.steps)
