"""The prior attack gives the same figures whether its VAE was trained now or reused."""

from pathlib import Path

from privpart.attacks import prior as prior_mod
from privpart.auditing import AuditConfig, Auditor
from privpart.profiling import ProfileConfig


def test_prior_same_whether_vae_trained_or_reused(tiny_checkpoint: Path) -> None:
    cfg = AuditConfig(
        model="tinycnn",
        checkpoint=str(tiny_checkpoint),
        cuts="block1",
        attacks=["prior"],
        attack_steps=4,
        profile=ProfileConfig(repeats=3, warmup=1, untrusted_threads=1),
    )
    prior_mod._VAES.clear()
    first = Auditor(cfg, None, show_progress=False).run().cut("block1").attacks["prior"]
    assert prior_mod._VAES, "the VAE is kept for reuse"
    second = Auditor(cfg, None, show_progress=False).run().cut("block1").attacks["prior"]
    prior_mod._VAES.clear()
    assert second.to_dict()["metrics"] == first.to_dict()["metrics"]
