"""Attacks that know a defence: each attack class lists the defences it adapts to
(`Attack.adaptive_to`), and the audit adds them to the attacks it runs on a checkpoint whose
meta.json records one of those defences. A defence is judged by an attacker who knows it.

| defence | adaptive attacks | what they exploit |
|---|---|---|
| noise, bottleneck | denoiser, prior-decoder | fresh noisy queries of augmented aux images: a decoder that learns E[x given noisy features] |
| noise, bottleneck | whitebox, prior | the head's weights include the noise module: invert the noiseless head, prior tuned on noisy aux features |
| adversarial, nopeek | whitebox, prior | optimisation against the defended weights themselves, not a learned proxy the defence trained against |
"""  # noqa: E501

from __future__ import annotations

from privpart.attacks.registry import ATTACKS


def adaptive_attacks(defence: str | None) -> list[str]:
    """Registered attacks that declare they know `defence` (by method name), sorted."""
    if not defence:
        return []
    return [name for name in ATTACKS.names() if defence in ATTACKS.get(name).adaptive_to]
