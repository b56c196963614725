from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from privpart.errors import PrivpartError
from privpart.models import ZOO, ModelSpec, build_model, load_pretrained, parse_input_shape


@pytest.mark.parametrize("arch", ["tinycnn", "vgg16", "resnet50", "efficientnet_b0"])
@pytest.mark.parametrize("channels,classes", [(1, 10), (3, 4)])
def test_zoo_adapts_channels_and_classes(arch: str, channels: int, classes: int) -> None:
    model = build_model(ModelSpec(arch, channels, classes, (32, 32))).eval()
    with torch.no_grad():
        assert model(torch.rand(2, channels, 32, 32)).shape == (2, classes)


def test_registry_names() -> None:
    assert {"vgg16", "resnet50", "efficientnet_b0", "tinycnn"} <= set(ZOO.names())


def test_too_small_input_is_a_clear_error() -> None:
    with pytest.raises(PrivpartError, match="at least 32x32"):
        build_model(ModelSpec("vgg16", 1, 10, (16, 16)))


def test_parse_input_shape() -> None:
    assert parse_input_shape("3x224x224") == (3, 224, 224)
    with pytest.raises(PrivpartError, match="CxHxW"):
        parse_input_shape("224")


def test_local_pretrained_weights_adapt_first_conv(tmp_path: Path) -> None:
    rgb = build_model(ModelSpec("resnet50", 3, 1000, (32, 32)))
    f = tmp_path / "resnet50.safetensors"
    save_file({k: v.contiguous() for k, v in rgb.state_dict().items()}, str(f))
    grey = build_model(ModelSpec("resnet50", 1, 10, (32, 32)))
    notes = load_pretrained(grey, f)
    assert any("conv1.weight: averaged 3" in n for n in notes)
    assert any(n.startswith("fc.weight") and "skipped" in n for n in notes)
    assert torch.allclose(grey.layer1[0].conv1.weight, rgb.layer1[0].conv1.weight)
    assert torch.allclose(grey.conv1.weight[:, 0], rgb.conv1.weight.mean(1))


def test_user_model_errors(tmp_path: Path) -> None:
    with pytest.raises(PrivpartError, match="does not exist"):
        build_model(ModelSpec(f"{tmp_path}/missing.py:make"))
    f = tmp_path / "m.py"
    f.write_text("x = 1\n")
    with pytest.raises(PrivpartError, match="no callable 'make'"):
        build_model(ModelSpec(f"{f}:make"))
