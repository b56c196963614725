"""An audit of a noisy defended head carries a certified figure beside the empirical ones, in
results.json, the report and the CLI, labelled as what it is."""

from __future__ import annotations

import json
from pathlib import Path

from privpart.auditing import AuditConfig, Auditor, AuditResult
from privpart.cli.audit import print_summary
from privpart.profiling import ProfileConfig
from privpart.report import render_report
from privpart.ui import console


def test_noisy_cuts_are_certified_and_labelled(bottleneck_checkpoint: Path, tmp_path: Path) -> None:
    cfg = AuditConfig(
        model="tinycnn",
        checkpoint=str(bottleneck_checkpoint),
        cuts="block1,block2.noise,block3",
        attacks=["decoder"],
        attack_steps=4,
        adaptive=False,  # the attacks that know the defence: tests/attacks/test_adaptive.py
        profile=ProfileConfig(repeats=3, warmup=1, untrusted_threads=1),
    )
    out = tmp_path / "audit"
    result = Auditor(cfg, out, show_progress=False).run()
    by = {c.name: c for c in result.cuts}
    assert by["block1"].certified is None, "a deterministic head certifies nothing"
    noisy, later = by["block2.noise"].certified, by["block3"].certified
    assert noisy is not None and noisy.kind == "certified" and "unbiased" in noisy.covers
    assert noisy.mse_floor > 0 and noisy.victims == 32
    # block3 is computed from the noisy code: the same bound holds there (data processing)
    assert later is not None and later.mse_floor == noisy.mse_floor

    saved = json.loads((out / "results.json").read_text())
    cut = next(c for c in saved["cuts"] if c["cut"]["name"] == "block2.noise")
    assert cut["certified"]["kind"] == "certified"
    assert AuditResult.load(out / "results.json").cut("block2.noise").certified == noisy

    html = render_report(out / "results.json").read_text()
    assert "certified (unbiased attackers)" in html and "empirical" in html
    with console.capture() as cap:
        print_summary(result)
    text = cap.get()
    assert "certified" in text and "MSE>=" in text and "empirical" in text
