"""The white-box inversion core: exact inversion of an invertible head, the box constraint,
restarts picked by the attack's own objective, the TV weight picked on aux images."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from privpart.attacks import Budget, FeatureSet, compute_feature_sets, make_attack, run_attack
from privpart.attacks.base import Clock
from privpart.attacks.inversion import (
    choose_tv,
    invert,
    starting_points,
    total_variation,
)
from privpart.data import Attribute, Dataset, make_splits
from privpart.errors import PrivpartError
from privpart.partition import Partition


def images(n: int, seed: int, size: int = 16) -> torch.Tensor:
    """Blocky 3-channel images with exact 0 and 1 pixels (what a sigmoid never reaches)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 4, size // 4, generator=g) * 1.6 - 0.3
    return nn.functional.interpolate(coarse, scale_factor=4, mode="nearest").clamp(0, 1)


def orthogonal_stem(seed: int = 0) -> nn.Module:
    """1x1 conv with an orthogonal weight, then a leaky ReLU: invertible."""
    torch.manual_seed(seed)
    conv = nn.Conv2d(3, 3, 1, bias=False)
    nn.init.orthogonal_(conv.weight.view(3, 3))
    head = nn.Sequential(conv, nn.LeakyReLU(0.2)).eval()
    for p in head.parameters():
        p.requires_grad_(False)
    return head


def stem_features(n_aux: int = 40, n_victim: int = 8) -> FeatureSet:
    """Features at the output of an orthogonal 1x1-conv stem, computed by the framework."""
    n = n_aux + n_victim + 12
    pixels = (images(n, 1) * 255).round().to(torch.uint8)  # 0 and 255 stay exact
    labels = torch.arange(n) % 2
    ds = Dataset("blocks", pixels, labels, ["a", "b"], "memory",
                 attributes={"class": Attribute(labels, ["a", "b"])})  # fmt: skip
    model = nn.Sequential(orthogonal_stem(), nn.Flatten(), nn.Linear(3 * 16 * 16, 2)).eval()
    part = Partition(model, (3, 16, 16))
    splits = make_splits(ds, seed=0, n_aux=n_aux, n_victim=n_victim)
    return compute_feature_sets(part, ds, splits, [part.cut("0")], (16, 16),
                                show_progress=False)["0"]  # fmt: skip


def test_whitebox_inverts_an_invertible_head_exactly() -> None:
    fs = stem_features()
    result = run_attack("whitebox", fs, Budget(steps=100), tv_candidates="0,0.05")
    assert result.ssim > 0.99 and result.psnr > 40, result.metrics
    assert result.reid == 1.0  # it names its input every time
    info = result.config
    assert info["tv_weight"] == 0.0 and set(info["tv_choice"]["scores"]) == {"0", "0.05"}
    assert info["inversion"]["steps"] == 100 and info["tv_choice"]["steps"] == 100
    assert info["inversion"]["feature_distance_max"] < 1e-3
    recon, victims = result.samples, fs.victim_inputs[: result.samples.shape[0]]
    # saturated 0 / 1 pixels are reached too (where a sigmoid parametrisation's gradient dies)
    edge = (victims == 0) | (victims == 1)
    assert edge.float().mean() > 0.1 and float((recon - victims)[edge].abs().mean()) < 1e-3


def test_restarts_are_chosen_by_the_objective_not_the_truth() -> None:
    head, victims = orthogonal_stem(), images(6, 3)
    with torch.no_grad():
        targets = head(victims)
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(victims.shape, generator=g)
    starts = torch.stack([noise, victims.clone()])  # restart 1 starts at the answer
    run = invert(head, targets, starts, Clock(None, 10), lr=0.05, warmup=0.3)
    assert run.restart.tolist() == [1] * 6 and run.images.shape == victims.shape


def test_starting_points_begin_with_the_nearest_aux_image() -> None:
    head, aux = orthogonal_stem(), images(20, 4)
    with torch.no_grad():
        feats = head(aux)
    starts = starting_points(feats[:5], aux, feats, restarts=4)
    assert starts.shape == (4, 5, 3, 16, 16)
    assert torch.equal(starts[0], aux[:5])  # each target's own features are nearest
    assert torch.allclose(starts[1], aux.mean(0, keepdim=True).expand(5, -1, -1, -1))


def test_tv_is_chosen_on_aux_where_the_head_discards_information() -> None:
    # A 4x average-pooling head discards detail: smooth aux images call for a TV prior.
    head = nn.AvgPool2d(4).eval()
    g = torch.Generator().manual_seed(0)
    smooth = nn.functional.interpolate(torch.rand(24, 1, 4, 4, generator=g), size=16,
                                       mode="bilinear", align_corners=False)  # fmt: skip
    with torch.no_grad():
        feats = head(smooth)
    choice = choose_tv(head, smooth[:4], feats[:4], smooth[4:], feats[4:], (0.0, 0.05),
                       Clock(None, 60), restarts=1, lr=0.05, warmup=0.0)  # fmt: skip
    assert choice.weight == 0.05 and choice.scores[0.05] > choice.scores[0.0]
    assert total_variation(smooth).shape == (24,)


def test_bad_weight_lists_fail_before_any_work() -> None:
    with pytest.raises(PrivpartError, match="tv_candidates holds 'x'") as err:
        make_attack("whitebox", tv_candidates="0,x")
    assert "--tv-candidates" in err.value.hint
    with pytest.raises(PrivpartError, match="refine holds '-1'"):
        make_attack("prior", refine="none,-1")
    assert make_attack("prior", refine="none, 0.01").settings().refine == (None, 0.01)
