"""Features of a dataset streamed from disk: only the splits in use are decoded, and derived
attributes come from those splits' images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from privpart.attacks import compute_feature_sets, default_attribute
from privpart.attacks.attribute_choice import attribute_names, available_attributes
from privpart.data import FolderStore, load_dataset, make_splits
from privpart.data.synthetic import write_image_folder
from privpart.partition import Partition


def test_only_aux_and_victims_are_decoded(tmp_path: Path, monkeypatch) -> None:
    folder = write_image_folder(tmp_path / "f", 90, classes=3, size=16, fmt="png")
    ds = load_dataset(f"imagefolder:{folder}@16", attributes=folder / "attributes.csv")
    splits = make_splits(ds, seed=0)
    decoded: list[int] = []
    real = FolderStore.sample

    def counting(self: FolderStore, i: int, size: tuple[int, int]) -> torch.Tensor:
        decoded.append(i)
        return real(self, i, size)

    monkeypatch.setattr(FolderStore, "sample", counting)
    monkeypatch.setenv("PRIVPART_DATA_WORKERS", "0")  # decode here, where the count is kept
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 16 * 16, 3)).eval()  # fmt: skip
    part = Partition(model, (3, 16, 16))
    sets = compute_feature_sets(part, ds, splits, part.interior_cuts[:1], (16, 16),
                                batch_size=8, show_progress=False)  # fmt: skip
    used = set(torch.cat([splits.aux, splits.victim]).tolist())
    assert set(decoded) == used and len(decoded) == len(used)  # each once, nothing else
    fs = next(iter(sets.values()))
    # brightness from the decoded images: terciles of the aux split, victims by the same cuts
    assert "brightness" not in available_attributes(ds)  # never over the whole folder
    assert "brightness" in attribute_names(ds)
    aux_b = fs.aux_attributes["brightness"]
    assert set(aux_b.tolist()) == {0, 1, 2} and aux_b.bincount().min() >= len(aux_b) // 3 - 1
    means = fs.victim_inputs.flatten(1).mean(1)
    cuts = torch.quantile(fs.aux_inputs.flatten(1).mean(1), torch.tensor([1 / 3, 2 / 3]))
    assert torch.equal(fs.victim_attributes["brightness"], torch.bucketize(means, cuts))
    # the attributes file's column is the default private attribute, not the task label
    assert fs.attribute_classes["tint"] == ["cool", "warm"]
    assert default_attribute(ds.name, "class", fs.aux_attributes.keys()) == "tint"
    assert default_attribute(ds.name, "tint", fs.aux_attributes.keys()) == "class"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_features_on_cuda_match_the_cpu(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "f", 40, classes=2, size=16, fmt="png")
    ds = load_dataset(f"imagefolder:{folder}@16")
    splits = make_splits(ds, seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 16 * 16, 2)).eval()  # fmt: skip
    part = Partition(model, (3, 16, 16))
    cut = part.interior_cuts[:1]
    cpu = compute_feature_sets(part, ds, splits, cut, (16, 16), show_progress=False)
    gpu = compute_feature_sets(part, ds, splits, cut, (16, 16), show_progress=False,
                               device="cuda")  # fmt: skip
    a, b = cpu[cut[0].name], gpu[cut[0].name]
    assert b.device.type == "cuda" and b.aux_features.device.type == "cpu"
    torch.testing.assert_close(a.aux_features, b.aux_features, rtol=1e-4, atol=1e-4)
    assert torch.equal(a.aux_inputs, b.aux_inputs)
