from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from privpart.audit import AuditResult
from privpart.report import render_report
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


def test_report_renders_from_results_json_only(tmp_path: Path) -> None:
    results = write_sample(tmp_path / "audit")
    page = render_report(results)
    html = page.read_text()
    assert "Cut at avgpool" in html
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


def test_results_json_schema_round_trip(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "a")
    r = AuditResult.load(path)
    assert r.selected_cut == "avgpool" and [c.name for c in r.cuts][0] == "features.4"
    for key in ("metrics", "baselines"):
        assert key in r.cuts[0].attacks["cgan"]


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
