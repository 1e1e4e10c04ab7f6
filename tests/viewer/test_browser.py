"""The viewer page in a real headless Chromium (Debian's package), driven by Playwright."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from tests.viewer.conftest import chromium_path

pytestmark = pytest.mark.slow


def test_page_in_chromium(served: str) -> None:
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(served)
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        assert "viewer-demo" in page.inner_text("#label")
        assert page.inner_text("#pager-info") == "rows 1–50 of 120"
        first = page.locator("#rows tbody tr").first
        assert "better answer: question 0" in first.inner_text()
        # filter by column value
        page.select_option("#column", "instruction")
        page.fill("#value", "question 42")
        page.click("#apply")
        page.wait_for_function(
            "document.querySelector('#pager-info').textContent === 'rows 1–1 of 1'"
        )
        assert "question 42" in page.inner_text("#rows tbody")
        # failed rows, and the lineage of one shows its error
        page.fill("#value", "")
        kinds = page.locator("#failure option[data-kind]").all_inner_texts()
        assert kinds == ["bad_request (11)"]  # the kinds present, with counts
        page.select_option("#failure", "bad_request")
        page.click("#apply")
        page.wait_for_function(
            "document.querySelector('#pager-info').textContent === 'rows 1–11 of 11'"
        )
        page.locator("#rows tbody tr").first.click()
        page.wait_for_selector("#lineage .error")
        assert "question 7" in page.inner_text("#lineage .error")
        shot = Path(tempfile.mkdtemp(prefix="alambic-viewer-")) / "viewer.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        # failures grouped, plots drawn, the diff shows a changed row
        page.click("#tab-failures")
        page.wait_for_selector("#failures .group")
        assert "11×" in page.inner_text("#failures")
        page.click("#tab-plots")
        page.wait_for_selector("#plots svg", timeout=60_000)
        page.click("#tab-diff")
        page.wait_for_selector("#diff-summary")
        assert "120 changed" in page.inner_text("#diff-summary")
        assert "better answer: question 0" in page.inner_text("#diff .after")
        browser.close()
