"""Image folders are read lazily: same splits and tensors as decoding everything up front."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from privpart.data import FolderStore, load_dataset, make_splits
from privpart.data.loading import chunks
from privpart.data.synthetic import write_image_folder
from privpart.errors import PrivpartError


def eager_reference(folder: Path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What `imagefolder:` did before streaming: decode and resize every image into one tensor."""
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize((size, size)), transforms.PILToTensor()])
    probe = datasets.ImageFolder(str(folder))
    grey = all(Image.open(p).mode in ("L", "1") for p, _ in probe.samples[:50])
    mode = "L" if grey else "RGB"
    ds = datasets.ImageFolder(
        str(folder), transform=tf, loader=lambda p: Image.open(p).convert(mode)
    )
    pairs = [ds[i] for i in range(len(ds))]
    return torch.stack([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("folders")
    return {
        "png": write_image_folder(root / "png", 240, classes=4, size=40, fmt="png", seed=1),
        "jpg": write_image_folder(root / "jpg", 120, classes=3, size=48, fmt="jpg", seed=2),
        "grey": write_image_folder(root / "grey", 60, classes=2, size=20, fmt="png", grey=True),
    }


@pytest.mark.parametrize("kind,size", [("png", 32), ("jpg", 32), ("grey", 24)])
def test_lazy_folder_matches_the_eager_loader(folders: dict, kind: str, size: int) -> None:
    folder = folders[kind]
    images, labels = eager_reference(folder, size)
    ds = load_dataset(f"imagefolder:{folder}@{size}")
    assert isinstance(ds.store, FolderStore) and ds.streamed
    assert ds.channels == images.shape[1] and ds.native_size == (size, size)
    assert torch.equal(ds.labels, labels)
    splits = make_splits(ds, seed=0)
    assert sum(splits.sizes().values()) == len(ds)
    # a few samples inline, a split through two worker processes: both equal the eager tensors
    idx = splits.victim[:5]
    assert torch.equal(ds.inputs(idx, (size, size)), images[idx].float() / 255)
    streamed = list(ds.loader(chunks(splits.aux, 16), (size, size), workers=2))
    x = torch.cat([b for b, _ in streamed])
    assert torch.equal(torch.cat([i for _, i in streamed]), splits.aux)
    assert torch.equal(x, images[splits.aux].float() / 255)


def test_folder_decodes_at_the_size_asked(folders: dict) -> None:
    ds = load_dataset(f"imagefolder:{folders['png']}")  # default size 32
    assert ds.native_size == (32, 32)
    x = ds.inputs(torch.arange(3), (64, 48))
    assert x.shape == (3, 3, 64, 48) and x.min() >= 0 and x.max() <= 1


def test_a_corrupt_image_names_itself_from_a_worker(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "f", 60, classes=1, size=8, fmt="png")
    bad = folder / "c0" / "000059.png"  # beyond the files probed when the folder is listed
    bad.write_bytes(b"not a png")
    ds = load_dataset(f"imagefolder:{folder}@8")
    with pytest.raises(PrivpartError) as err:
        list(ds.loader(chunks(torch.arange(len(ds)), 16), (8, 8), workers=1))
    assert bad.name in err.value.message and "replace the file" in err.value.hint


def test_bad_size_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(PrivpartError, match="not a number"):
        load_dataset(f"imagefolder:{tmp_path}@big")
    with pytest.raises(PrivpartError, match="is not a folder"):
        load_dataset(f"imagefolder:{tmp_path / 'none'}")
