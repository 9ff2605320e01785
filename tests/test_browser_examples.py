"""The search tab's example queries, clicked in a real headless Chromium: a click searches.

Chromium comes from apt, and its absence fails the test.
"""

from __future__ import annotations

from pathlib import Path

from searchcore.config import Settings
from tests.support import App, browser_page, run_cli, settings_env


def test_clicking_an_example_query_searches_for_it(settings: Settings, dataset: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    done = run_cli("ingest", str(dataset), "--split", "valid", env=settings_env(settings))
    assert done.returncode == 0, done.stderr
    with App(settings_env(settings), log=tmp_path / "app.log") as app, \
            browser_page(app.url, viewport={"width": 1280, "height": 900}) as page:
        page.get_by_role("button", name="蓝色的正方形", exact=True).click()

        expect(page.get_by_label("Describe the picture")).to_have_value("蓝色的正方形")
        expect(page.locator("#status")).to_contain_text("12 results for “蓝色的正方形”")
        captions = page.locator("#results .caption-label").all_inner_texts()
        assert len(captions) == 12
        assert all(c.endswith("蓝色的正方形") for c in captions[:3]), captions
