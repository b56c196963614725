from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from privpart.errors import PrivpartError
from privpart.models import ModelSpec, build_model
from privpart.partition import Partition, split


def _check_exact(model: nn.Module, shape: tuple[int, int, int]) -> Partition:
    model.eval()
    part = Partition(model, shape)
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x)
        for cut in part.cuts:
            s = part.split(cut)
            got = s.tail(s.head(x))
            assert torch.equal(got, want), f"cut {cut.name} is not exact"
            assert tuple(s.head(x).shape[1:]) == cut.shape
    return part


@pytest.mark.parametrize("arch", ["tinycnn", "vgg16", "resnet50", "efficientnet_b0"])
def test_every_cut_of_every_zoo_model_is_exact(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch, 1, 10, (32, 32)))
    part = _check_exact(model, (1, 32, 32))
    names = [c.name for c in part.cuts]
    assert len(names) == len(set(names)), "cut names must be unique"
    assert part.cuts[0].position == "input" and part.cuts[-1].position == "output"
    assert len(part.interior_cuts) >= 5


def test_human_readable_names() -> None:
    names = {
        a: [c.name for c in Partition(build_model(ModelSpec(a)).eval(), (1, 32, 32)).cuts]
        for a in ("vgg16", "resnet50", "efficientnet_b0")
    }
    assert "features.16" in names["vgg16"]
    assert {"layer1", "layer2", "layer3", "layer4", "maxpool"} <= set(names["resnet50"])
    # a stage of one block ends where its block ends: named after the stage, not the block
    assert "features.1" in names["efficientnet_b0"]
    assert "features.1.0" not in names["efficientnet_b0"]
    assert "features.3.0" in names["efficientnet_b0"], "the first of features.3's two blocks"
    assert {"features.2", "features.3", "features.4.0"} <= set(names["efficientnet_b0"])


def test_no_cut_inside_resnet_block() -> None:
    part = Partition(build_model(ModelSpec("resnet50")).eval(), (1, 32, 32))
    for cut in part.cuts:
        # inside a bottleneck the block input is live until the residual add
        assert not any(s in cut.name for s in (".conv", ".bn", ".relu", "downsample")), cut.name


def test_cut_metadata_adds_up() -> None:
    model = build_model(ModelSpec("tinycnn")).eval()
    part = Partition(model, (1, 32, 32))
    total = sum(p.numel() for p in model.parameters())
    for cut in part.cuts:
        assert cut.head_params + cut.tail_params == total
        assert cut.bytes_per_sample == 4 * torch.Size(cut.shape).numel()
    flops = [c.head_flops for c in part.cuts]
    assert flops == sorted(flops) and flops[0] == 0 and part.cuts[0].tail_flops > 0


USER_MODEL = """
import torch
from torch import nn

class Skip(nn.Module):
    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = self.b(torch.relu(self.a(x)))
        x = torch.relu(x + y)
        return self.head(x.mean(dim=(2, 3)))

def make(in_channels=1, num_classes=10):
    return Skip(in_channels, num_classes)
"""


def test_user_model_with_skip_connection(tmp_path: Path) -> None:
    f = tmp_path / "net.py"
    f.write_text(USER_MODEL)
    model = build_model(ModelSpec(f"{f}:make", 1, 10, (16, 16)))
    part = _check_exact(model, (1, 16, 16))
    names = [c.name for c in part.cuts]
    assert "a" not in names and "b" not in names, "cuts inside the skip must not be offered"
    assert "stem" in names
    s = split(model, "stem", (1, 16, 16))
    assert s.cut.name == "stem"


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.gate = Gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.conv(x))


class Gate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow
            return x
        return -x


def test_untraceable_model_names_the_module() -> None:
    with pytest.raises(PrivpartError) as err:
        Partition(Untraceable(), (1, 8, 8))
    assert "'gate'" in err.value.message and "Gate" in err.value.message
    assert "--leaf gate" in err.value.hint
    part = Partition(Untraceable(), (1, 8, 8), leaf_modules=["gate"])
    assert [c.name for c in part.cuts] == ["input", "conv", "gate"]


def test_unknown_cut_lists_legal_ones() -> None:
    part = Partition(build_model(ModelSpec("tinycnn")).eval(), (1, 32, 32))
    with pytest.raises(PrivpartError, match="not a legal cut") as err:
        part.cut("block9")
    assert "block1" in err.value.hint


def test_split_shares_parameters_with_model() -> None:
    model = build_model(ModelSpec("tinycnn"))
    s = split(model, "block2", (1, 32, 32))
    head_params = {id(p) for p in s.head.parameters()}
    assert id(model.block1[0].weight) in head_params
    assert id(model.fc.weight) in {id(p) for p in s.tail.parameters()}
