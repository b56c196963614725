"""Image dataset loaders: Fashion-MNIST, any MNIST-format IDX directory, an ImageFolder tree."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from privpart.data.dataset import Attribute, Dataset
from privpart.data.idx import find_idx_set, load_idx_set
from privpart.data.registry import DATASETS
from privpart.errors import PrivpartError

FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
# Coarse groups: a task the server may learn while the fine class stays private (see defences).
FASHION_GROUPS = ["tops", "bottoms", "footwear", "bags"]
FASHION_GROUP_OF = [0, 1, 0, 0, 0, 2, 0, 2, 3, 2]

DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
INSTALL_HINT = (
    "install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put the "
    "four IDX files (train-images-idx3-ubyte.gz, ...) in a folder and pass --data-dir FOLDER"
)


def fashion_candidates(data_dir: Path | None) -> list[Path]:
    """Every folder searched for Fashion-MNIST, in order."""
    roots = [data_dir] if data_dir else []
    if os.environ.get("PRIVPART_DATA"):
        roots.append(Path(os.environ["PRIVPART_DATA"]))
    roots += [DEBIAN_FASHION_DIR, Path("data"), Path.home() / ".cache" / "privpart"]
    out: list[Path] = []
    for root in roots:
        out += [root, root / "FashionMNIST" / "raw", root / "fashion-mnist"]
    return out


@DATASETS.register("fashion-mnist")
def fashion_mnist(arg: str, data_dir: Path | None) -> Dataset:
    """Zalando's Fashion-MNIST, 70k 28x28 grey images in 10 classes (IDX files)."""
    looked = fashion_candidates(data_dir)
    for folder in looked:
        files = find_idx_set(folder)
        if files:
            images, labels, test_start = load_idx_set(files)
            if int(labels.max()) >= 10 or int(labels.min()) < 0:
                raise PrivpartError(
                    f"{files['train_labels']}: labels outside 0..9", "reinstall Fashion-MNIST"
                )
            groups = torch.tensor(FASHION_GROUP_OF)[labels]
            return Dataset(
                name="fashion-mnist",
                images=images,
                labels=labels,
                classes=FASHION_CLASSES,
                source=str(folder),
                test_start=test_start,
                attributes={
                    "class": Attribute(labels, FASHION_CLASSES),
                    "group": Attribute(groups, FASHION_GROUPS),
                },
            )
    places = "\n    ".join(str(p) for p in looked)
    raise PrivpartError(f"Fashion-MNIST not found; looked in:\n    {places}", INSTALL_HINT)


@DATASETS.register("idx")
def idx_directory(arg: str, data_dir: Path | None) -> Dataset:
    """`idx:DIR`: any MNIST-format directory (train/t10k images and labels, plain or .gz)."""
    folder = Path(arg) if arg else data_dir
    if folder is None:
        raise PrivpartError("idx: needs a folder", "write the dataset as idx:path/to/folder")
    files = find_idx_set(folder)
    if not files:
        raise PrivpartError(
            f"no MNIST-format files in {folder}",
            "the folder needs train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (optionally .gz)",
        )
    images, labels, test_start = load_idx_set(files)
    classes = [str(i) for i in range(int(labels.max()) + 1)]
    return Dataset(
        name=f"idx:{folder}",
        images=images,
        labels=labels,
        classes=classes,
        source=str(folder),
        test_start=test_start,
        attributes={"class": Attribute(labels, classes)},
    )


@DATASETS.register("imagefolder")
def image_folder(arg: str, data_dir: Path | None) -> Dataset:
    """`imagefolder:DIR[@SIZE]`: one sub-folder per class (torchvision ImageFolder), resized."""
    from PIL import Image
    from torchvision import datasets, transforms

    path_text, _, size_text = arg.partition("@")
    folder = Path(path_text)
    size = int(size_text) if size_text else 32
    if not folder.is_dir():
        raise PrivpartError(f"{folder} is not a folder", "give imagefolder:path/to/root")
    tf = transforms.Compose([transforms.Resize((size, size)), transforms.PILToTensor()])
    try:
        probe = datasets.ImageFolder(str(folder))
        grey = all(Image.open(p).mode in ("L", "1") for p, _ in probe.samples[:50])
        mode = "L" if grey else "RGB"
        ds = datasets.ImageFolder(
            str(folder), transform=tf, loader=lambda p: Image.open(p).convert(mode)
        )
        pairs = [ds[i] for i in range(len(ds))]
    except (FileNotFoundError, OSError) as exc:
        raise PrivpartError(
            f"cannot load images from {folder}: {exc}",
            "the folder needs one sub-folder per class holding image files",
        ) from exc
    images = torch.stack([p[0] for p in pairs]).to(torch.uint8)
    labels = torch.tensor([p[1] for p in pairs], dtype=torch.long)
    return Dataset(
        name=f"imagefolder:{folder}",
        images=images,
        labels=labels,
        classes=list(ds.classes),
        source=str(folder),
        attributes={"class": Attribute(labels, list(ds.classes))},
    )
