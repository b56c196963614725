from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import make_idx_dir, make_ton_iot_csv

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def idx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_idx_dir(tmp_path_factory.mktemp("idx"))


@pytest.fixture(scope="session")
def ton_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ton_iot_csv(tmp_path_factory.mktemp("ton") / "network.csv")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, idx_dir: Path) -> Path:
    """A tinycnn trained for one quick epoch on the synthetic IDX data."""
    from privpart.training import train_to_checkpoint

    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    return train_to_checkpoint(
        "tinycnn",
        f"idx:{idx_dir}",
        out,
        epochs=30,
        batch_size=16,
        show_progress=False,
        n_aux=100,
        n_victim=32,
    )


@pytest.fixture(scope="session")
def bottleneck_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tiny_checkpoint` defended by a 2-channel noisy bottleneck at block2 (a few steps),
    sigma chosen for a certified MSE floor of 0.05 on the defender's samples."""
    from privpart.defences import defend

    out = tmp_path_factory.mktemp("bottleneck") / "bn"
    params = {"steps": 6, "batch_size": 16, "limit": 96, "channels": 2, "target_mse": 0.05,
              "recalibrate_steps": 4}  # fmt: skip
    return defend(tiny_checkpoint, "bottleneck", "block2", out, params, show_progress=False)


@pytest.fixture(scope="session")
def code_ckpt(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    """`tiny_checkpoint` with its architecture named as a Python file that leaves a marker when
    it runs (tests.helpers.code_checkpoint)."""
    from tests.helpers import code_checkpoint

    return code_checkpoint(tiny_checkpoint, tmp_path_factory.mktemp("code-ckpt"))
