"""Attacks that know a defence: declared per attack, added by the audit on a defended
checkpoint, and the white-box attacks' handling of the noise module."""

from __future__ import annotations

from pathlib import Path

import torch

from privpart.attacks.adaptive import adaptive_attacks
from privpart.attacks.whitebox import attack_copy
from privpart.auditing import AuditConfig, Auditor
from privpart.defences import defend
from privpart.models.wrappers import CutNoise, wrap_at
from privpart.partition import Partition
from privpart.profiling import ProfileConfig


def test_attacks_declare_the_defences_they_know() -> None:
    assert adaptive_attacks("noise") == ["denoiser", "prior", "prior-decoder", "whitebox"]
    assert adaptive_attacks("bottleneck") == adaptive_attacks("noise"), "noise is noise"
    assert adaptive_attacks("adversarial") == adaptive_attacks("nopeek") == ["prior", "whitebox"]
    assert adaptive_attacks(None) == adaptive_attacks("shredder") == []


def test_white_box_copy_switches_the_noise_off_in_its_own_copy_only() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU())
    wrap_at(model, "1", CutNoise(torch.ones(1, 4, 1, 1), 0.5))
    head = Partition(model, (1, 8, 8)).split("1").head.eval()
    x = torch.rand(2, 1, 8, 8)
    assert not torch.equal(head(x), head(x))  # the deployed head is noisy
    quiet, silenced = attack_copy(head, torch.device("cpu"))
    assert silenced and torch.equal(quiet(x), quiet(x))
    assert torch.allclose(quiet(x), model[1].inner(model[0](x)), atol=1e-6)
    assert not torch.equal(head(x), head(x))  # the shared head still adds its noise
    assert not any(p.requires_grad for p in quiet.parameters())


def test_the_audit_adds_the_attacks_that_know_the_defence(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    noisy = defend(tiny_checkpoint, "noise", "block2", tmp_path / "noisy",
                   {"steps": 3, "batch_size": 16, "limit": 64, "sigma": 0.5},
                   show_progress=False)  # fmt: skip
    small = {"prior": {"victims": 4, "latent": 4, "vae_width": 4, "refine": "none"},
             "prior-decoder": {"latent": 4, "vae_width": 4, "projection_steps": 2},
             "whitebox": {"victims": 4, "tv_candidates": "0"},
             "denoiser": {"base_width": 4, "max_width": 8}}  # fmt: skip
    cfg = AuditConfig(checkpoint=str(noisy), cuts="block2", attacks=["decoder"], attack_steps=2,
                      attack_params=small, profile=ProfileConfig(repeats=2, warmup=1))  # fmt: skip
    result = Auditor(cfg, None, show_progress=False).run()
    (cut,) = result.cuts
    assert set(cut.attacks) == {"decoder", "denoiser", "prior", "prior-decoder", "whitebox"}
    assert cut.attacks["whitebox"].config["noise_switched_off"] is True
    off_cfg = AuditConfig(**{**cfg.__dict__, "adaptive": False, "attack_params": {}})
    off = Auditor(off_cfg, None, show_progress=False)
    assert set(off.run().cuts[0].attacks) == {"decoder"}
