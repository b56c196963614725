"""Per-image attributes from a file (`attributes=FILE`), usable as the `task` or the attacked
`attribute`.

Two layouts, told apart by the first line:
- CSV with a header: one column naming the image (`file`, `filename`, `image`, `image_id`,
  `path` or `name`; else the first column) and one column per attribute. Values are categories
  (any text; integers sort numerically).
- CelebA's `list_attr_celeba.txt`, as distributed: a line with the image count, a line of
  attribute names, then `000001.jpg  -1  1 ...` rows (whitespace-separated). -1/1 become
  `no`/`yes`, so the task `Male` has the classes [no, yes].

Rows are matched to images by the file's path under the dataset root (`class_a/img1.png`),
else by its bare file name when that is unique (CelebA's flat names). Every image needs a row;
rows for images not in the dataset are ignored (a folder may hold a subset of CelebA).
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from privpart.data.dataset import Attribute, Dataset
from privpart.errors import PrivpartError, PrivpartFileNotFoundError, PrivpartValueError

FILE_COLUMNS = ("file", "filename", "image", "image_id", "path", "name")
CELEBA_VALUES = {"-1": "no", "1": "yes"}


@dataclass(frozen=True)
class AttributeTable:
    """Rows of an attributes file: the image each row names, and each attribute's values."""

    path: Path
    files: list[str]
    columns: dict[str, list[str]]  # attribute -> value per row (text)


def _celeba(path: Path, lines: list[str]) -> AttributeTable:
    names = lines[1].split()
    files, columns = [], {n: [] for n in names}
    for number, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != len(names) + 1:
            raise PrivpartError(
                f"{path}: line {number} has {len(fields) - 1} values for {len(names)} attributes",
                "the file is truncated or not in CelebA's list_attr_celeba.txt layout",
            )
        files.append(fields[0])
        for name, value in zip(names, fields[1:], strict=True):
            columns[name].append(CELEBA_VALUES.get(value, value))
    return AttributeTable(path, files, columns)


def _csv(path: Path, text: str) -> AttributeTable:
    try:
        rows = [r for r in csv.reader(text.splitlines()) if r]
    except csv.Error as exc:
        raise PrivpartError(f"{path} is not a readable CSV: {exc}", "check the file") from exc
    header, body = [h.strip() for h in rows[0]], rows[1:]
    if len(header) < 2:
        raise PrivpartError(
            f"{path} has {len(header)} column(s)",
            "give a file column and at least one attribute column, e.g. file,gender",
        )
    lowered = [h.lower() for h in header]
    file_col = next((lowered.index(c) for c in FILE_COLUMNS if c in lowered), 0)
    for number, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise PrivpartError(
                f"{path}: row {number} has {len(r)} fields, the header has {len(header)}",
                "the file is truncated or malformed",
            )
        empty = [header[j] for j, v in enumerate(r) if not v.strip()]
        if empty:
            raise PrivpartError(
                f"{path}: row {number} has no value for {', '.join(empty)}",
                "give every image a value for every attribute",
            )
    files = [r[file_col].strip() for r in body]
    columns = {header[j]: [r[j].strip() for r in body] for j in range(len(header)) if j != file_col}
    return AttributeTable(path, files, columns)


def read_attribute_table(path: Path) -> AttributeTable:
    """Parse an attributes file in either layout (see the module docstring)."""
    if not path.is_file():
        raise PrivpartFileNotFoundError(
            f"attributes file {path} does not exist",
            "give `attributes` a CSV (file column + one column per attribute) or CelebA's "
            "list_attr_celeba.txt",
            param="attributes",
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PrivpartError(f"cannot read {path}: {exc}", "give a UTF-8 text file") from exc
    lines = text.splitlines()
    if len(lines) < 2:
        raise PrivpartError(f"{path} has no rows", "give a header line and one row per image")
    table = _celeba(path, lines) if lines[0].strip().isdigit() else _csv(path, text)
    if not table.files:
        raise PrivpartError(f"{path} has no rows", "give one row per image")
    return table


def _classes(values: list[str]) -> list[str]:
    """Sorted categories: numerically when every value is an integer."""
    unique = set(values)
    try:
        return sorted(unique, key=int)
    except ValueError:
        return sorted(unique)


def _row_of(table: AttributeTable, keys: list[str]) -> list[int]:
    """For each sample key (path under the root), the table row that names it."""
    by_path = {Path(f).as_posix(): i for i, f in enumerate(table.files)}
    if len(by_path) != len(table.files):
        twice = [f for f, n in Counter(table.files).items() if n > 1][:3]
        raise PrivpartError(
            f"{table.path} names some images twice, e.g. {', '.join(twice)}",
            "give each image one row",
        )
    names = Counter(Path(f).name for f in table.files)
    by_name = {Path(f).name: i for i, f in enumerate(table.files) if names[Path(f).name] == 1}
    rows, missing = [], []
    for key in keys:
        posix = Path(key).as_posix()
        row = by_path.get(posix, by_name.get(Path(key).name))
        if row is None:
            missing.append(posix)
        rows.append(-1 if row is None else row)
    if missing:
        raise PrivpartError(
            f"{table.path} has no row for {len(missing)} of {len(keys)} images, e.g. "
            f"{', '.join(missing[:3])}",
            "name each image by its path under the dataset folder (class/img.png) or by its "
            "file name",
        )
    return rows


def attributes_from_table(table: AttributeTable, keys: list[str]) -> dict[str, Attribute]:
    """One `Attribute` per column, in the order of the samples named by `keys`."""
    rows = torch.tensor(_row_of(table, keys), dtype=torch.long)
    out = {}
    for name, values in table.columns.items():
        chosen = [values[int(r)] for r in rows]
        classes = _classes(chosen)
        code = {c: i for i, c in enumerate(classes)}
        out[name] = Attribute(torch.tensor([code[v] for v in chosen], dtype=torch.long), classes)
    return out


def with_attribute_file(ds: Dataset, path: Path) -> Dataset:
    """`ds` with the per-image attributes in `path` (see the module docstring)."""
    keys = ds.store.keys()
    if keys is None:
        raise PrivpartValueError(
            f"dataset {ds.name} has no image files to match an attributes file against",
            "`attributes` applies to imagefolder:DIR datasets",
            param="attributes",
        )
    table = read_attribute_table(path)
    clash = sorted(set(table.columns) & set(ds.attributes))
    if clash:
        raise PrivpartError(
            f"{path}: column(s) {', '.join(clash)} clash with the dataset's own attributes",
            "rename those columns",
        )
    return ds.with_attributes(attributes_from_table(table, keys))
