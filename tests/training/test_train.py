from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from privpart.errors import PrivpartError
from privpart.training import load_checkpoint, read_meta, train_to_checkpoint
from privpart.training.train import PRECISIONS, check_precision, make_adamw

BF16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()


def test_adamw_is_fused_where_torch_has_the_kernel() -> None:
    conv = torch.nn.Conv2d(3, 4, 3)
    opt = make_adamw(list(conv.parameters()), 1e-3, 0.0)
    assert opt.defaults["fused"] is True
    conv(torch.rand(2, 3, 8, 8)).sum().backward()
    before = conv.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, conv.weight)


def test_fused_adamw_matches_the_reference_step() -> None:
    torch.manual_seed(0)
    a, b = torch.nn.Linear(8, 4), torch.nn.Linear(8, 4)
    b.load_state_dict(a.state_dict())
    fused = make_adamw(list(a.parameters()), 1e-2, 5e-4)
    plain = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=5e-4)
    x = torch.rand(16, 8)
    for _ in range(5):
        for net, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            net(x).square().sum().backward()
            opt.step()
    torch.testing.assert_close(a.weight, b.weight)


def test_unknown_precision_names_the_choices() -> None:
    with pytest.raises(PrivpartError) as err:
        check_precision("fp8")
    assert "fp8" in str(err.value) and all(p in err.value.hint for p in PRECISIONS)
    with pytest.raises(PrivpartError, match="CUDA mode"):
        check_precision("fp16")


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=pytest.mark.skipif(
    not BF16, reason="CPU has no oneDNN bf16"))])  # fmt: skip
def test_training_precision_learns_and_saves_fp32_contiguous(
    precision: str, idx_dir: Path, tmp_path: Path
) -> None:
    ckpt = train_to_checkpoint(
        "tinycnn", f"idx:{idx_dir}", tmp_path / precision, epochs=30, batch_size=16,
        show_progress=False, n_aux=100, n_victim=32, precision=precision,
    )  # fmt: skip
    meta = read_meta(ckpt)
    assert meta["train_config"]["precision"] == precision
    assert meta["test_accuracy"] > 0.5  # 10 classes: chance is 0.1
    for name, t in load_file(str(ckpt / "model.safetensors")).items():
        assert t.dtype == torch.float32 and t.is_contiguous(), name
    model, _ = load_checkpoint(ckpt)
    assert all(p.is_contiguous() for p in model.parameters())


def test_minutes_budget_trains_against_the_clock(idx_dir: Path, tmp_path: Path) -> None:
    budget_s = 2.4
    # two steps per epoch: even a busy 2-core host does more than one epoch in 2.4 s
    ckpt = train_to_checkpoint(
        "tinycnn", f"idx:{idx_dir}", tmp_path / "clock", train_limit=32, epochs=1, batch_size=16,
        show_progress=False, n_aux=100, n_victim=32, precision="fp32", minutes=budget_s / 60,
    )  # fmt: skip
    meta = read_meta(ckpt)
    assert meta["train_config"]["minutes"] == pytest.approx(budget_s / 60)
    # stops at the deadline (within a step), not after the one epoch asked for ...
    assert budget_s <= meta["train_seconds"] < budget_s + 2.0
    assert meta["samples_seen"] > meta["split_sizes"]["target_train"]
    # ... and the schedule followed the clock to its annealed end
    assert meta["final_lr"] < 0.05 * meta["train_config"]["lr"]


def test_epochs_run_the_whole_schedule(tiny_checkpoint: Path) -> None:
    meta = read_meta(tiny_checkpoint)
    assert meta["final_lr"] < 1e-3 * meta["train_config"]["lr"]


CUDA = torch.cuda.is_available()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not CUDA, reason="no CUDA device on this machine"))])  # fmt: skip
def test_same_seed_same_weights_on_the_same_device(
    device: str, idx_dir: Path, tmp_path: Path
) -> None:
    runs = [
        train_to_checkpoint(
            "tinycnn",
            f"idx:{idx_dir}",
            tmp_path / f"{device}{i}",
            train_limit=64,
            epochs=2,
            batch_size=16,
            show_progress=False,
            n_aux=100,
            n_victim=32,
            device=device,
        )  # fmt: skip
        for i in range(2)
    ]
    a, b = (load_file(str(r / "model.safetensors")) for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    meta = read_meta(runs[0])
    assert meta["train_config"]["device"].startswith(device)
    assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in a.values())
