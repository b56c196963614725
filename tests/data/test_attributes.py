"""Per-image attributes files (CSV and CelebA's layout) drive --task and --attribute."""

from __future__ import annotations

from pathlib import Path

import pytest

from privpart.data import load_dataset, read_attribute_table
from privpart.data.synthetic import write_image_folder
from privpart.errors import PrivpartError


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("faces"), 30, classes=3, size=16, fmt="png")


def test_csv_attributes_by_relative_path(faces: Path) -> None:
    ds = load_dataset(f"imagefolder:{faces}@16", attributes=faces / "attributes.csv")
    rows = dict(line.split(",") for line in (faces / "attributes.csv").read_text().split()[1:])
    tint = ds.attributes["tint"]
    assert tint.classes == ["cool", "warm"]
    for i, key in enumerate(ds.store.keys()):
        assert tint.classes[int(tint.values[i])] == rows[key]
    as_task = ds.with_task("tint")
    assert as_task.classes == ["cool", "warm"] and as_task.labels.tolist() == tint.values.tolist()


def test_celeba_layout_by_file_name(faces: Path, tmp_path: Path) -> None:
    keys = load_dataset(f"imagefolder:{faces}@16").store.keys()
    lines = [str(len(keys) + 1), "Male Smiling Young"]
    for i, key in enumerate(keys):
        lines.append(f"{Path(key).name}  {'1' if i % 3 == 0 else '-1'} -1  1")
    lines.append("999999.jpg -1 -1 -1")  # an image the folder does not hold: ignored
    celeba = tmp_path / "list_attr_celeba.txt"
    celeba.write_text("\n".join(lines) + "\n")
    table = read_attribute_table(celeba)
    assert list(table.columns) == ["Male", "Smiling", "Young"]
    ds = load_dataset(f"imagefolder:{faces}@16", attributes=celeba)
    male = ds.attributes["Male"]
    assert male.classes == ["no", "yes"]
    assert male.values.tolist() == [1 if i % 3 == 0 else 0 for i in range(len(keys))]
    assert ds.attributes["Young"].classes == ["yes"]


def test_missing_rows_and_clashes_are_clear(faces: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial.csv"
    partial.write_text("image,gender\n" + "c0/000000.png,f\n")
    with pytest.raises(PrivpartError) as err:
        load_dataset(f"imagefolder:{faces}@16", attributes=partial)
    assert "no row for" in err.value.message and "file name" in err.value.hint
    clash = tmp_path / "clash.csv"
    clash.write_text("file,class\n" + "".join(f"{k},x\n" for k in range(3)))
    with pytest.raises(PrivpartError, match="clash"):
        load_dataset(f"imagefolder:{faces}@16", attributes=clash)
    with pytest.raises(PrivpartError, match="does not exist"):
        load_dataset(f"imagefolder:{faces}@16", attributes=tmp_path / "none.csv")
