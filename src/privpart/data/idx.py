"""IDX files (the MNIST format): parse with validation, so corrupt files name themselves."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from privpart.errors import PrivpartError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (optionally gzipped) into a tensor; any inconsistency names the file."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise PrivpartError(
            f"cannot read {path}: {exc}", "the file is corrupt or truncated: reinstall the data"
        ) from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise PrivpartError(
            f"{path} is not an IDX file (bad magic number)", "point privpart at MNIST-format files"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise PrivpartError(f"{path}: truncated IDX header", "the file is truncated: reinstall it")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise PrivpartError(
            f"{path}: IDX header declares shape {dims} ({expected} bytes) but the file has "
            f"{len(raw) - header} bytes of data",
            "the file is truncated or corrupt: reinstall the data",
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return torch.from_numpy(array.astype(array.dtype.newbyteorder("="), copy=True))


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as IDX (gzipped if the name ends in .gz); used to make test data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    data = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data += array.tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def find_idx_set(directory: Path) -> dict[str, Path] | None:
    """The four MNIST-format files in `directory` (plain or .gz), or None if any is missing."""
    found = {}
    for key, stem in _FILES.items():
        for candidate in (directory / stem, directory / f"{stem}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def load_idx_set(files: dict[str, Path]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(images uint8 N×1×H×W, labels int64, index where the test set starts)."""
    parts = {k: read_idx(p) for k, p in files.items()}
    for split in ("train", "test"):
        imgs, labels = parts[f"{split}_images"], parts[f"{split}_labels"]
        if imgs.dim() != 3 or labels.dim() != 1 or imgs.shape[0] != labels.shape[0]:
            raise PrivpartError(
                f"{files[f'{split}_images']} and {files[f'{split}_labels']} disagree: "
                f"{tuple(imgs.shape)} images vs {tuple(labels.shape)} labels",
                "the files are from different datasets or truncated: reinstall them",
            )
    images = torch.cat([parts["train_images"], parts["test_images"]]).unsqueeze(1)
    labels = torch.cat([parts["train_labels"], parts["test_labels"]]).long()
    return images.to(torch.uint8), labels, int(parts["train_labels"].shape[0])
