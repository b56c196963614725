"""The networks the black-box reconstruction attacks train: a generator that upsamples any
feature shape back to the input, and a pix2pix-style patch discriminator conditioned on features.

Design for CPU budgets: channels shrink as resolution grows (32 at full resolution, up to 128 at
low resolution), so one training step on a 32x32 input costs ~40-60 MFLOPs per sample at any cut.
Feature maps with >= 4x4 spatial extent keep their layout (a conv stem, then upsample + conv
stages); flat vectors and tiny maps (after flatten/linear layers, or 1x1/2x2 maps) are first
projected by a linear layer to a small map (4x4 for 32 px inputs), since they have no spatial
layout worth keeping.
"""

from __future__ import annotations

from math import prod

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Standardize(nn.Module):
    """Per-channel (maps) or per-dimension (vectors) standardisation fitted on aux features.

    Feature scales differ by orders of magnitude between cuts; standardising makes one learning
    rate work everywhere.
    """

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    @classmethod
    def fit(cls, features: Tensor) -> Standardize:
        f = features.float()
        dims = [0, *range(2, f.dim())]  # everything but the channel axis
        mean = f.mean(dims, keepdim=True)[0]
        std = f.std(dims, keepdim=True)[0].clamp_min(1e-6 * float(f.std()) + 1e-12)
        return cls(mean, std)

    def forward(self, x: Tensor) -> Tensor:
        return (x.float() - self.mean) / self.std


def is_spatial(feature_shape: tuple[int, ...], out_size: tuple[int, int]) -> bool:
    """Whether a feature map keeps its layout (C x H x W with H, W >= 4, or the full input)."""
    if len(feature_shape) != 3:
        return False
    h, w = feature_shape[1:]
    return min(h, w) >= 4 or (h, w) >= tuple(out_size)


def seed_size(side: int) -> int:
    """Side of the map a vector is projected to: halve the output while it stays >= 4 (32 -> 4,
    28 -> 7, 224 -> 7, 6 -> 6)."""
    s = side
    while s % 2 == 0 and s // 2 >= 4:
        s //= 2
    return min(s, side)


def width_at(side: int, out_side: int, base: int = 32, cap: int = 128) -> int:
    return int(min(cap, base * max(1, out_side // max(side, 1))))


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class FeatureGenerator(nn.Module):
    """(N, *feature_shape) standardised features -> (N, C, H, W) images in [0, 1]."""

    def __init__(
        self,
        feature_shape: tuple[int, ...],
        out_shape: tuple[int, int, int],
        base_width: int = 32,
        max_width: int = 128,
    ) -> None:
        super().__init__()
        c_out, H, W = out_shape
        self.out_size = (H, W)
        out_side = min(H, W)

        def width(side: int) -> int:
            return width_at(side, out_side, base_width, max_width)

        layers: list[nn.Module] = []
        if is_spatial(feature_shape, (H, W)):
            c, h, w = feature_shape
            ch = width(min(h, w))
            layers += _block(c, ch)
        else:
            h, w = seed_size(H), seed_size(W)
            ch = width(min(h, w))
            layers += [
                nn.Flatten(),
                nn.Linear(prod(feature_shape), ch * h * w, bias=False),
                nn.BatchNorm1d(ch * h * w),
                nn.ReLU(),
                nn.Unflatten(1, (ch, h, w)),
            ]
        while h * 2 <= H and w * 2 <= W:
            h, w = h * 2, w * 2
            nxt = width(min(h, w))
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), *_block(ch, nxt)]
            ch = nxt
        if (h, w) != (H, W):
            layers.append(nn.Upsample(size=(H, W), mode="bilinear", align_corners=False))
        layers += [*_block(ch, ch), nn.Conv2d(ch, c_out, 3, padding=1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)


class PatchDiscriminator(nn.Module):
    """pix2pix PatchGAN: real/fake logits per image patch, conditioned on the features.

    The features are projected to a few channels (1x1 conv, or linear for vectors), resized to
    the image and concatenated with it, so D judges whether an image fits *these* features.
    """

    def __init__(
        self,
        feature_shape: tuple[int, ...],
        image_shape: tuple[int, int, int],
        cond_channels: int = 16,
        width: int = 32,
    ) -> None:
        super().__init__()
        c_img, H, W = image_shape
        self.size = (H, W)
        if len(feature_shape) == 3:
            self.cond: nn.Module = nn.Conv2d(feature_shape[0], cond_channels, 1)
        else:
            s = (seed_size(H), seed_size(W))
            self.cond = nn.Sequential(
                nn.Flatten(),
                nn.Linear(prod(feature_shape), cond_channels * s[0] * s[1]),
                nn.Unflatten(1, (cond_channels, *s)),
            )
        layers: list[nn.Module] = []
        ch, side, downs = c_img + cond_channels, min(H, W), 0
        while downs < 2 and side // 2 >= 4:
            nxt = width * 2**downs
            layers.append(nn.Conv2d(ch, nxt, 4, stride=2, padding=1))
            if downs:
                layers.append(nn.BatchNorm2d(nxt))
            layers.append(nn.LeakyReLU(0.2))
            ch, side, downs = nxt, side // 2, downs + 1
        if not layers:
            layers += [nn.Conv2d(ch, width, 3, padding=1), nn.LeakyReLU(0.2)]
            ch = width
        layers.append(nn.Conv2d(ch, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, image: Tensor, features: Tensor) -> Tensor:
        cond = self.cond(features)
        if tuple(cond.shape[2:]) != self.size:
            cond = F.interpolate(cond, size=self.size, mode="bilinear", align_corners=False)
        return self.net(torch.cat([image, cond], 1))
