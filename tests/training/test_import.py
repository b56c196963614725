"""A model as it is: a 1000-class torchvision checkpoint at 224 px becomes a privpart checkpoint
without training, with its own classifier, input size and normalisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from privpart.data.synthetic import write_image_folder
from privpart.errors import PrivpartError
from privpart.training import import_to_checkpoint, load_checkpoint, read_meta


@pytest.fixture(scope="module")
def torchvision_b0(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """An EfficientNet-B0 state dict exactly as torchvision saves it (random weights: nothing
    can be downloaded here), as .pth: read with torch's weights-only loader."""
    torch.manual_seed(0)
    tv = torchvision.models.efficientnet_b0(weights=None).eval()
    f = tmp_path_factory.mktemp("weights") / "efficientnet_b0.pth"
    torch.save(tv.state_dict(), f)
    return f, tv


@pytest.fixture(scope="module")
def rgb_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("rgb"), 40, classes=4, size=64, fmt="jpg")


def test_import_keeps_the_model_as_it_is(
    torchvision_b0: tuple[Path, torch.nn.Module], rgb_folder: Path, tmp_path: Path
) -> None:
    weights, tv = torchvision_b0
    ckpt = import_to_checkpoint(
        "efficientnet_b0", weights, f"imagefolder:{rgb_folder}", tmp_path / "imported",
        attributes=rgb_folder / "attributes.csv", device="cpu", show_progress=False,
    )  # fmt: skip
    meta = read_meta(ckpt)
    spec = meta["spec"]
    assert (spec["num_classes"], spec["input_size"], spec["in_channels"]) == (1000, [224, 224], 3)
    assert spec["normalization"]["name"] == "imagenet"
    assert meta["trained"] is False and meta["train_seconds"] == 0.0
    assert len(meta["classes"]) == 1000 and meta["classes"][0] == "tench"  # ImageNet's names
    assert meta["dataset_classes"] == ["c0", "c1", "c2", "c3"]
    # random weights: its accuracy is measured, and it is (rightly) near chance
    assert meta["target_check"]["samples"] == meta["split_sizes"]["target_test"] > 0
    assert meta["target_check"]["weak"]
    model, _ = load_checkpoint(ckpt)
    x = torch.rand(2, 3, 224, 224)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), tv((x - mean) / std), atol=1e-4)


def test_import_refuses_what_does_not_fit(
    torchvision_b0: tuple[Path, torch.nn.Module], rgb_folder: Path, tmp_path: Path
) -> None:
    weights, _ = torchvision_b0
    with pytest.raises(PrivpartError, match="not resnet50 weights"):
        import_to_checkpoint("resnet50", weights, f"imagefolder:{rgb_folder}", tmp_path / "a",
                             device="cpu", show_progress=False)  # fmt: skip
    partial = tmp_path / "partial.safetensors"
    state = torchvision.models.efficientnet_b0(weights=None, num_classes=7).state_dict()
    state = {k: v.contiguous() for k, v in state.items() if not k.startswith("features.8")}
    save_file(state, str(partial))
    with pytest.raises(PrivpartError, match="does not hold the whole model"):
        import_to_checkpoint("efficientnet_b0", partial, f"imagefolder:{rgb_folder}",
                             tmp_path / "b", device="cpu", show_progress=False)  # fmt: skip
