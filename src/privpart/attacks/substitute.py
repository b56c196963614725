"""A substitute head for the attacker without head access (FORA, CVPR 2024; UnSplit).

The attacker holds public images from the victims' distribution (its aux set) and a batch of
intercepted feature maps, but can neither query the head nor read its weights. It trains a
substitute head S: image -> feature map of the intercepted shape, such that S(aux) is
distributed like the intercepted features:

    min_S  MK-MMD(S(aux), intercepted)  +  adv_weight * BCE(D(S(aux)), real)
    min_D  BCE(D(intercepted), real) + BCE(D(S(aux)), fake)

MK-MMD: Gaussian kernels at several bandwidths around the median pairwise distance (the
multi-kernel MMD of Long et al. 2015), on features standardised with the intercepted batch's
per-channel statistics. D is a small conv (maps) or MLP (vectors) feature discriminator. Where
the head is a stack of convolutions with ReLU and pooling, a substitute of the same kind is
pinned down well by the distribution of its outputs (a feature map has spatial layout, channel
correlations and sparsity of its own), which is what makes an inverse of S transfer to the head.

Architecture (the attacker knows the input and feature shapes, nothing else): conv3x3 +
batch-norm + ReLU stages, a 2x max-pool per halving of the resolution, widths growing towards
the feature channels; a final conv to the feature channels (a linear layer for vector features)
and a ReLU if every intercepted value is >= 0 (the head then ends in a ReLU or a pool of one).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from math import prod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from privpart.attacks.base import Clock, cosine_lr
from privpart.attacks.generator import Standardize


def _stage(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]


class SubstituteHead(nn.Module):
    """image (N, C, H, W) -> features (N, *feature_shape)."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        feature_shape: tuple[int, ...],
        nonnegative: bool,
        width: int = 32,
        max_width: int = 256,
    ) -> None:
        super().__init__()
        c, H, W = input_shape
        self.feature_shape = tuple(feature_shape)
        spatial = len(feature_shape) == 3 and min(feature_shape[1:]) >= 2
        target = feature_shape[1:] if spatial else (min(4, H), min(4, W))
        layers: list[nn.Module] = [*_stage(c, width)]
        ch, h, w = width, H, W
        while h // 2 >= target[0] and w // 2 >= target[1] and (h > target[0] or w > target[1]):
            nxt = min(max_width, ch * 2)
            layers += [nn.MaxPool2d(2), *_stage(ch, nxt)]
            ch, h, w = nxt, h // 2, w // 2
        if (h, w) != tuple(target):
            layers.append(nn.AdaptiveAvgPool2d(tuple(target)))
        if spatial:
            layers.append(nn.Conv2d(ch, feature_shape[0], 3, padding=1))
        else:
            layers += [nn.Flatten(), nn.Linear(ch * target[0] * target[1], prod(feature_shape)),
                       nn.Unflatten(1, tuple(feature_shape))]  # fmt: skip
        self.body = nn.Sequential(*layers)
        self.out = nn.ReLU() if nonnegative else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body(x))

    @torch.no_grad()
    def match_moments(self, x: Tensor, target: Tensor) -> None:
        """Data-dependent start: rescale the last layer so that, on the batch `x`, each output
        channel's pre-activation has the mean and spread of `target`'s channel. The
        distribution matching then starts at the right scale instead of orders off it."""
        last = next(m for m in reversed(self.body) if isinstance(m, nn.Conv2d | nn.Linear))
        was = self.training
        self.eval()
        dims = [0, *range(2, target.dim())]

        def per_unit(v: Tensor) -> Tensor:  # per-channel value -> one per output unit
            return v.flatten().repeat_interleave(last.weight.shape[0] // v.numel())

        shape = (-1, *([1] * (last.weight.dim() - 1)))
        pre = self.body(x).float()
        gain = target.float().std(dims) / pre.std(dims).clamp_min(1e-6)
        last.weight.mul_(per_unit(gain).reshape(shape))
        if last.bias is not None:
            last.bias.mul_(per_unit(gain))
            shift = target.float().mean(dims) - self.body(x).float().mean(dims)
            last.bias.add_(per_unit(shift))
        self.train(was)


class FeatureDiscriminator(nn.Module):
    """Real (intercepted) vs substitute features: one logit per sample."""

    def __init__(self, feature_shape: tuple[int, ...], width: int = 32) -> None:
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm  # keeps D's logits tame (stable game)
        if len(feature_shape) == 3 and min(feature_shape[1:]) >= 2:
            stride = 2 if min(feature_shape[1:]) >= 4 else 1  # cheap on large maps
            self.net: nn.Module = nn.Sequential(
                sn(nn.Conv2d(feature_shape[0], width, 3, stride=stride, padding=1)),
                nn.LeakyReLU(0.2),
                sn(nn.Conv2d(width, width, 3, stride=stride, padding=1)), nn.LeakyReLU(0.2),
                nn.AdaptiveAvgPool2d(2), nn.Flatten(), sn(nn.Linear(width * 4, 1)),
            )  # fmt: skip
        else:
            self.net = nn.Sequential(
                nn.Flatten(), sn(nn.Linear(prod(feature_shape), 2 * width)), nn.LeakyReLU(0.2),
                sn(nn.Linear(2 * width, 1)),
            )  # fmt: skip

    def forward(self, f: Tensor) -> Tensor:
        return self.net(f).flatten()


def mk_mmd(a: Tensor, b: Tensor, scales: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)) -> Tensor:
    """Squared multi-kernel MMD (biased estimate) between two batches of flattened vectors;
    Gaussian bandwidths are `scales` times the median pairwise squared distance (detached)."""
    x = torch.cat([a.flatten(1), b.flatten(1)])
    d = torch.cdist(x, x).pow(2)
    base = d.detach()[d.detach() > 0].median().clamp_min(1e-8)
    k = sum(torch.exp(-d / (s * base)) for s in scales) / len(scales)
    n = a.shape[0]
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


@dataclass
class SubstituteFit:
    steps: int
    seconds: float
    mmd: float  # final MK-MMD on a batch (standardised features)
    disc: float  # final discriminator loss
    nonnegative: bool


def train_substitute(
    aux_inputs: Tensor,
    intercepted: Tensor,
    clock: Clock,
    device: torch.device | str,
    width: int = 32,
    lr: float = 1e-3,
    d_lr: float = 2e-4,
    adv_weight: float = 0.1,
    batch_size: int = 64,
    seed: int = 0,
) -> tuple[SubstituteHead, SubstituteFit]:
    """Fit a substitute head on aux images alone, matched to the intercepted features in
    distribution. Never sees the real head: only what these arguments hold."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    aux = aux_inputs.to(device).float()
    real = intercepted.to(device).float()
    nonneg = bool((real >= 0).all())
    norm = Standardize.fit(real).to(device)
    S = SubstituteHead(tuple(aux.shape[1:]), tuple(real.shape[1:]), nonneg, width).to(device)
    S.match_moments(aux[:256], real[:256])
    D = FeatureDiscriminator(tuple(real.shape[1:])).to(device)
    s_opt = torch.optim.Adam(S.parameters(), lr=lr, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(D.parameters(), lr=d_lr, betas=(0.5, 0.999))
    bs = min(batch_size, aux.shape[0], real.shape[0])
    mmd_v = d_v = float("nan")
    while not clock.done:
        xi = torch.randint(0, aux.shape[0], (bs,), generator=g).to(device)
        fi = torch.randint(0, real.shape[0], (bs,), generator=g).to(device)
        scale = cosine_lr(1.0, clock.fraction)
        for group in s_opt.param_groups:
            group["lr"] = lr * scale
        for group in d_opt.param_groups:
            group["lr"] = d_lr * scale
        S.train()
        fake = norm(S(aux[xi]))
        true = norm(real[fi])
        if adv_weight > 0:
            d_loss = F.binary_cross_entropy_with_logits(
                D(true), torch.ones(bs, device=device)
            ) + F.binary_cross_entropy_with_logits(D(fake.detach()), torch.zeros(bs, device=device))
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            d_v = d_loss.item()
        mmd = mk_mmd(fake, true)
        loss = mmd
        if adv_weight > 0:
            loss = loss + adv_weight * F.binary_cross_entropy_with_logits(
                D(fake), torch.ones(bs, device=device)
            )
        s_opt.zero_grad(set_to_none=True)
        loss.backward()
        s_opt.step()
        clock.tick()
        mmd_v = mmd.item()
    S.eval().requires_grad_(False)
    fit = SubstituteFit(clock.step, time.perf_counter() - started, mmd_v,
                        d_v if math.isfinite(d_v) else float("nan"), nonneg)  # fmt: skip
    return S, fit
