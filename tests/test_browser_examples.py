"""The search tab's example queries, clicked in a real headless Chromium: a click searches.

The app and browser helpers are test_browser.py's; Chromium comes from apt, and its absence fails the test.
"""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli, settings_env

from searchcore.config import Settings
from tests.test_browser import CHROMIUM_ARGS, TIMEOUT_MS, chromium, running_app


def test_clicking_an_example_query_searches_for_it(settings: Settings, dataset: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    done = run_cli("ingest", str(dataset), "--split", "valid", env=settings_env(settings))
    assert done.returncode == 0, done.stderr
    executable = chromium()
    with running_app(tmp_path, settings) as app_url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(app_url)

            page.get_by_role("button", name="蓝色的正方形", exact=True).click()

            expect(page.get_by_label("Describe the picture")).to_have_value("蓝色的正方形")
            expect(page.locator("#status")).to_contain_text("12 results for “蓝色的正方形”", timeout=TIMEOUT_MS)
            captions = page.locator("#results .caption-label").all_inner_texts()
            assert len(captions) == 12
            assert all(c.endswith("蓝色的正方形") for c in captions[:3]), captions
        finally:
            browser.close()
