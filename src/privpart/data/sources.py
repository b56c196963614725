"""Image dataset loaders: Fashion-MNIST, any MNIST-format IDX directory, an ImageFolder tree."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from privpart.data.dataset import Attribute, Dataset
from privpart.data.idx import find_idx_set, load_idx_set
from privpart.data.registry import DATASETS
from privpart.data.store import FolderStore
from privpart.errors import PrivpartError, PrivpartFileNotFoundError

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
    "four IDX files (train-images-idx3-ubyte.gz, ...) in a folder and pass it as `data_dir`"
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
    raise PrivpartFileNotFoundError(
        f"Fashion-MNIST not found; looked in:\n    {places}", INSTALL_HINT, param="data_dir"
    )


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


def parse_size(text: str, spec: str) -> tuple[int, int]:
    """`224` or `224x160` (height x width) as written after `@` in a dataset name."""
    parts = text.lower().split("x")
    try:
        h, w = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except (ValueError, IndexError):
        raise PrivpartError(
            f"{spec}: image size {text!r} is not a number", "write e.g. imagefolder:DIR@224"
        ) from None
    if len(parts) > 2 or min(h, w) < 1:
        raise PrivpartError(f"{spec}: bad image size {text!r}", "write e.g. imagefolder:DIR@224")
    return h, w


# Sizes of images are probed from this many files (headers only) to tell grey from colour.
MODE_PROBE = 50


@DATASETS.register("imagefolder")
def image_folder(arg: str, data_dir: Path | None) -> Dataset:
    """`imagefolder:DIR[@SIZE]`: one sub-folder per class (torchvision's ImageFolder layout).

    Only the file list is read here; images are decoded (converted to grey or RGB, resized to
    SIZE x SIZE, default 32) when a stage asks for them, so any number of files fits. Grey if
    the first files are all grey, else RGB.
    """
    from PIL import Image
    from torchvision import datasets

    path_text, _, size_text = arg.partition("@")
    folder = Path(path_text)
    size = parse_size(size_text, f"imagefolder:{arg}") if size_text else (32, 32)
    if not folder.is_dir():
        raise PrivpartError(f"{folder} is not a folder", "give imagefolder:path/to/root")
    try:
        classes, class_to_idx = datasets.folder.find_classes(str(folder))
        samples = datasets.folder.make_dataset(
            str(folder), class_to_idx, extensions=datasets.folder.IMG_EXTENSIONS
        )
    except (FileNotFoundError, OSError) as exc:
        raise PrivpartError(
            f"cannot list images in {folder}: {exc}",
            "the folder needs one sub-folder per class holding image files",
        ) from exc
    modes = []
    for p, _ in samples[:MODE_PROBE]:
        try:
            with Image.open(p) as img:
                modes.append(img.mode)
        except OSError as exc:
            raise PrivpartError(
                f"cannot decode image {p}: {exc}",
                "remove or replace the file (every file under the class folders must be an image)",
            ) from exc
    mode = "L" if all(m in ("L", "1") for m in modes) else "RGB"
    files = [str(Path(p).relative_to(folder)) for p, _ in samples]
    labels = torch.tensor([k for _, k in samples], dtype=torch.long)
    return Dataset(
        name=f"imagefolder:{folder}",
        images=FolderStore(folder, files, mode, size),
        labels=labels,
        classes=list(classes),
        source=str(folder),
        attributes={"class": Attribute(labels, list(classes))},
    )
