from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from privpart.data import load_dataset, make_splits
from privpart.data.idx import read_idx, write_idx
from privpart.data.tabular import TON_IOT_NETWORK, TON_IOT_NETWORK_COLUMNS
from privpart.errors import PrivpartError
from tests.helpers import make_idx_dir


def test_idx_round_trip(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        write_idx(tmp_path / name, arr)
        assert torch.equal(read_idx(tmp_path / name), torch.from_numpy(arr))


def test_truncated_idx_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "x-idx3-ubyte"
    write_idx(f, np.zeros((4, 5, 5), np.uint8))
    f.write_bytes(f.read_bytes()[:-7])
    with pytest.raises(PrivpartError, match="x-idx3-ubyte.*declares shape"):
        read_idx(f)


def test_corrupt_gzip_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "y-idx1-ubyte.gz"
    f.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (10).to_bytes(4, "big") + b"0" * 10)[:-9])
    with pytest.raises(PrivpartError, match="y-idx1-ubyte.gz"):
        read_idx(f)


def test_bad_magic(tmp_path: Path) -> None:
    f = tmp_path / "z"
    f.write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(PrivpartError, match="bad magic"):
        read_idx(f)


def test_idx_directory_dataset(idx_dir: Path) -> None:
    ds = load_dataset(f"idx:{idx_dir}")
    assert len(ds) == 420 and ds.test_start == 300
    assert ds.images.shape == (420, 1, 28, 28) and ds.images.dtype == torch.uint8
    x = ds.inputs(torch.arange(4), (32, 32))
    assert x.shape == (4, 1, 32, 32) and x.min() >= 0 and x.max() <= 1


def test_missing_fashion_mnist_names_every_place(tmp_path: Path, monkeypatch) -> None:
    import privpart.data.sources as sources

    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", tmp_path / "nowhere")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PrivpartError) as err:
        load_dataset("fashion-mnist", tmp_path / "mine")
    for place in (
        tmp_path / "mine",
        tmp_path / "mine" / "FashionMNIST" / "raw",
        tmp_path / "nowhere",
    ):
        assert str(place) in err.value.message
    assert "apt-get install dataset-fashion-mnist" in err.value.hint


def test_fashion_mnist_from_data_dir(tmp_path: Path) -> None:
    make_idx_dir(tmp_path / "FashionMNIST" / "raw")
    ds = load_dataset("fashion-mnist", tmp_path)
    assert ds.classes[0] == "T-shirt/top" and "group" in ds.attributes
    assert ds.with_task("group").classes == ["tops", "bottoms", "footwear", "bags"]


def test_splits_are_disjoint_and_deterministic(idx_dir: Path) -> None:
    ds = load_dataset(f"idx:{idx_dir}")
    a = make_splits(ds, seed=3, n_test=40, n_aux=100, n_victim=32)
    b = make_splits(ds, seed=3, n_test=40, n_aux=100, n_victim=32)
    parts = [a.target_train, a.target_test, a.aux, a.victim]
    all_idx = torch.cat(parts)
    assert all_idx.unique().numel() == all_idx.numel(), "splits overlap"
    assert all(
        torch.equal(x, y)
        for x, y in zip(parts, [b.target_train, b.target_test, b.aux, b.victim], strict=True)
    )
    assert (a.victim >= ds.test_start).all() and (a.target_test >= ds.test_start).all()
    assert (a.aux < ds.test_start).all() and (a.target_train < ds.test_start).all()
    c = make_splits(ds, seed=4, n_test=40, n_aux=100, n_victim=32)
    assert not torch.equal(a.aux, c.aux)


def test_split_too_large_is_a_clear_error(idx_dir: Path) -> None:
    ds = load_dataset(f"idx:{idx_dir}")
    with pytest.raises(PrivpartError, match="not enough samples for the aux"):
        make_splits(ds, n_aux=10_000)


def test_ton_iot_csv_becomes_square_grids(ton_csv: Path) -> None:
    ds = load_dataset(f"ton-iot:{ton_csv}")
    assert ds.kind == "tabular" and ds.images.dtype == torch.float32
    k = ds.images.shape[-1]
    assert ds.images.shape[1:] == (1, k, k) and k * k >= len(ds.feature_names)
    assert "ts" not in ds.feature_names and "src_ip" not in ds.feature_names
    assert {"proto", "service", "src_bytes"} <= set(ds.feature_names)
    assert ds.images.min() >= 0 and ds.images.max() <= 1
    assert set(ds.classes) == {"normal", "ddos", "scanning", "password"}
    assert {"proto", "service"} <= set(ds.attributes)


def test_generic_csv_and_malformed_rows(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text(
        "a,b,kind,y\n" + "".join(f"{i},{i * 2},{'xy'[i % 2]},{i % 3}\n" for i in range(30))
    )
    ds = load_dataset(f"csv:{f}")
    assert ds.feature_names == ["kind", "a", "b"] and ds.images.shape[-1] == 2
    f.write_text(f.read_text() + "1,2\n")
    with pytest.raises(PrivpartError, match="row 32 has 2 fields"):
        load_dataset(f"csv:{f}")


def test_unknown_dataset() -> None:
    with pytest.raises(PrivpartError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")


def test_ton_iot_schema_names_every_published_column_once() -> None:
    s = TON_IOT_NETWORK
    named = [*s.categorical, *s.numeric, *s.drop, s.label]
    assert sorted(named) == sorted(TON_IOT_NETWORK_COLUMNS)
    assert len(set(named)) == len(named) and set(s.attributes) <= set(s.categorical)


def test_default_split_sizes_follow_the_stated_rule(idx_dir: Path) -> None:
    ds = load_dataset(f"idx:{idx_dir}")  # 300 training-side, 120 test-side samples
    s = make_splits(ds, seed=0).sizes()
    assert s == {"target_train": 200, "target_test": 80, "aux": 100, "victim": 40}
    assert make_splits(ds, seed=0, max_train=50).sizes()["target_train"] == 50
    big = make_splits(load_dataset("csv:" + str(_table(Path(idx_dir).parent, 9000))), seed=0)
    # no official test set: 20% test side; caps of 2,000 aux / 256 victims / 2,000 test
    assert big.sizes() == {"target_train": 5200, "target_test": 1544, "aux": 2000, "victim": 256}


def _table(folder: Path, n: int) -> Path:
    f = folder / f"table{n}.csv"
    if not f.exists():
        f.write_text("a,b,y\n" + "".join(f"{i % 7},{i % 5},{i % 2}\n" for i in range(n)))
    return f


def test_split_errors_name_the_callers_parameter(idx_dir: Path) -> None:
    """make_splits names its own parameter, or the one a caller says sets the size; the
    command line shows the flag (privpart.cli.flags)."""
    from privpart.cli.flags import spoken
    from privpart.errors import PrivpartValueError

    ds = load_dataset(f"idx:{idx_dir}")
    with pytest.raises(ValueError) as err:
        make_splits(ds, n_aux=5000)
    assert isinstance(err.value, PrivpartValueError) and err.value.param == "n_aux"
    assert "`n_aux`" in err.value.hint and "--" not in str(err.value)
    assert "lower --aux," in spoken(err.value)[1]
    with pytest.raises(PrivpartValueError) as err:
        make_splits(ds, n_train=5000, params={"target_train": "train_limit"})
    assert "need 5000, 200 left" in err.value.message and "`train_limit`" in err.value.hint
    assert err.value.param == "train_limit" and "--train-limit" in spoken(err.value)[1]
    tiny = load_dataset("csv:" + str(_table(Path(idx_dir).parent, 12)))
    with pytest.raises(PrivpartValueError, match="too few") as err:
        make_splits(tiny)
    assert "set `n_aux` and `n_victim`" in err.value.hint
    assert "set --aux and --victim" in spoken(err.value)[1]
