"""The seed architectures, adapted to the data without touching the convolutional body.

Adaptations (all outside the body where cuts live):
- the first convolution takes `in_channels` (1 for Fashion-MNIST);
- the classifier outputs `num_classes`;
- VGG-16 below 224 px swaps the 7x7 average pool and 25088x4096 classifier for a global pool and a
  512-wide classifier: at 32 px the body ends at 1x1, so the original head would just replicate it
  49 times into 100M parameters.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from privpart.models.registry import ZOO
from privpart.models.spec import ModelSpec


def _min_size(spec: ModelSpec, minimum: int) -> None:
    from privpart.errors import PrivpartError

    if min(spec.input_size) < minimum:
        raise PrivpartError(
            f"{spec.arch} needs inputs of at least {minimum}x{minimum}, got {spec.input_size}",
            f"resize the data to {minimum}x{minimum} or more (privpart pads 28x28 images to 32x32)",
        )


def _replace_conv_in(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    if conv.in_channels == in_channels:
        return conv
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        bias=conv.bias is not None,
    )


@ZOO.register("vgg16")
def vgg16(spec: ModelSpec) -> nn.Module:
    """torchvision VGG-16 (13 conv layers, 5 max-pools): cuts `features.N`."""
    _min_size(spec, 32)
    m = torchvision.models.vgg16(weights=None, num_classes=spec.num_classes)
    m.features[0] = _replace_conv_in(m.features[0], spec.in_channels)
    if min(spec.input_size) < 224:
        m.avgpool = nn.AdaptiveAvgPool2d(1)
        m.classifier = nn.Sequential(
            nn.Linear(512, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(512, spec.num_classes),
        )
    return m


@ZOO.register("resnet50")
def resnet50(spec: ModelSpec) -> nn.Module:
    """torchvision ResNet-50: cuts at `conv1`..`maxpool`, `layer1.0`..`layer4.2`, `avgpool`."""
    _min_size(spec, 32)
    m = torchvision.models.resnet50(weights=None, num_classes=spec.num_classes)
    m.conv1 = _replace_conv_in(m.conv1, spec.in_channels)
    return m


@ZOO.register("efficientnet_b0")
def efficientnet_b0(spec: ModelSpec) -> nn.Module:
    """torchvision EfficientNet-B0: cuts at stage/block boundaries `features.N[.M]`."""
    _min_size(spec, 32)
    m = torchvision.models.efficientnet_b0(weights=None, num_classes=spec.num_classes)
    m.features[0][0] = _replace_conv_in(m.features[0][0], spec.in_channels)
    return m


class TinyCNN(nn.Module):
    """A 3-block CNN (about 30k parameters) for fast tests and quick experiments."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU())
        self.block2 = nn.Sequential(
            nn.Conv2d(width, width * 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.block3 = nn.Sequential(
            nn.Conv2d(width * 2, width * 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@ZOO.register("tinycnn")
def tinycnn(spec: ModelSpec) -> nn.Module:
    """A small plain CNN for tests: cuts `block1`, `block2`, `block3`, `pool`, ..."""
    _min_size(spec, 4)
    return TinyCNN(spec.in_channels, spec.num_classes)
