"""The comparison Space in a real browser: Debian Chromium driven by Playwright, loopback only."""

from __future__ import annotations

from pathlib import Path

import pytest

# The adapters, their cards and the app launched on loopback come from the Space tests.
from test_space import running_app, space_repos  # noqa: F401 - pytest fixtures

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    # The browser reaches loopback only: any other host fails to resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (apt-get install chromium)"),
]


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1100})
        finally:
            browser.close()


def _column_done(role: str) -> str:
    # The timing line appears when that column's generation has finished.
    return f"document.querySelector('#timing-{role}')?.innerText.includes('first token')"


def test_compare_in_a_real_browser(page, running_app, space_repos, artifacts_dir):  # noqa: F811
    url = running_app[0]
    row = space_repos["rows"][-1]
    page.goto(url)
    page.wait_for_selector("#prompt textarea")
    assert "not found" in page.inner_text("#problems")  # the missing random adapter is named

    page.fill("#prompt textarea", row["inputs"])
    page.fill("#choices textarea", "\n".join(row["answer_choices"]))
    page.fill("#gold textarea", row["targets"])
    page.click("#compare")
    page.wait_for_function(f"() => {_column_done('full')} && {_column_done('subset')}", timeout=120_000)

    full = page.input_value("#answer-full textarea")
    subset = page.input_value("#answer-subset textarea")
    assert full and subset and full != subset
    for role in ("full", "subset"):
        page.wait_for_selector(f"#probs-{role} canvas, #probs-{role} svg", timeout=30_000)

    scores = page.inner_text("#scores")
    for value in ("0.6137", "0.7012", "0.6282", "0.6894"):
        assert value in scores
    assert "RTE" in scores and "SNLI held-out" in scores
    assert space_repos["dataset"] in page.inner_text("#links")

    page.screenshot(path=str(artifacts_dir / "space.png"), full_page=True)

    page.click("#clear")
    page.wait_for_function("() => document.querySelector('#answer-full textarea').value === ''", timeout=30_000)
    assert page.input_value("#prompt textarea") == ""
