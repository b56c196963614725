from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from privpart.auditing import AuditResult
from privpart.report import render_report
from privpart.selection import Status
from tests.report.sample import write_sample

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_a_results_json_renders(tmp_path: Path) -> None:
    results = write_sample(tmp_path / "audit")
    page = render_report(results)
    html = page.read_text()
    assert "Cut at avgpool" in html
    assert "broken: cgan ..." in html  # the verdict's note
    for fig in ("leakage.png", "latency.png", "pareto.png"):
        assert (page.parent / fig).stat().st_size > 5000
        assert f'src="{fig}"' in html
    assert "http://" not in html and "https://" not in html, "the report must work offline"
    assert "features.4__cgan.png" in html


def test_tabular_report_has_feature_table_not_grids(tmp_path: Path) -> None:
    page = render_report(write_sample(tmp_path / "tab", tabular=True))
    html = page.read_text()
    assert "Best-recovered features" in html and "Reconstructions" not in html
    assert "<td>proto</td>" in html


def test_a_results_json_loads_as_typed_results(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "a")
    r = AuditResult.load(path)
    assert r.schema_version == 2 and r.selected_cut == "avgpool"
    assert [c.name for c in r.cuts][0] == "features.4"
    cgan = r.leakage("features.4", "cgan")
    assert cgan.ssim == pytest.approx(0.86) and cgan.metric("ssim").baselines["aux_mean"] == 0.2
    assert cgan.metric("ssim").estimate.interval is None  # the sample has no intervals
    attr = r.leakage("features.4", "attribute").metric("accuracy")
    assert attr.baselines == {"majority": 0.4, "chance": 0.25, "task_floor": 0.45}
    assert r.verdicts["avgpool"].status is Status.SELECTED
    assert r.verdicts["whole model trusted"].status is Status.PASSES
    assert r.config.constraints.rule(cgan.metric("ssim").spec).floor == 0.4
    assert r.config.constraints.rule(cgan.metric("ssim").spec) is not None
    again = AuditResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert again.to_dict() == r.to_dict()


def test_results_that_kept_the_memory_budget_twice_still_load(tmp_path: Path) -> None:
    """Results written when the EPC budget was also a profiling setting (`profile.epc_bytes`,
    `fits_epc` per cut) load; the budget read is Constraints.memory_budget_bytes."""
    path = write_sample(tmp_path / "old")
    d = json.loads(path.read_text())
    d["config"]["profile"]["epc_bytes"] = 1 << 20
    d["config"]["constraints"]["memory_budget_bytes"] = 64 << 20
    for c in d["cuts"]:
        c["latency"]["fits_epc"] = True
    for p in d["extremes"].values():
        p["fits_epc"] = False
    path.write_text(json.dumps(d))
    r = AuditResult.load(path)
    assert r.config.constraints.memory_budget_bytes == 64 << 20
    assert "epc_bytes" not in r.to_dict()["config"]["profile"]
    assert r.extremes["whole_trusted"].fits(r.config.constraints.memory_budget_bytes)


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian chromium not installed (scripts/test.sh installs it)"
)
def test_report_in_headless_chromium(tmp_path: Path) -> None:
    """Every image loads and the verdict is visible, in a real browser with no network."""
    playwright = pytest.importorskip("playwright.sync_api")
    page_path = render_report(write_sample(tmp_path / "audit"))
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(page_path.as_uri())
            page.wait_for_load_state("load")
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.getAttribute('src'), e.complete, e.naturalWidth])"
            )
            assert len(images) >= 3 + 9
            broken = [src for src, complete, width in images if not complete or width == 0]
            assert not broken, f"images failed to load: {broken}"
            verdict = page.locator("#verdict")
            assert verdict.is_visible()
            assert "Cut at avgpool" in verdict.inner_text()
            box = verdict.bounding_box()
            assert box is not None and box["y"] < 400, "the verdict must be at the top"
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
