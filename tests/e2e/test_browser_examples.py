"""The search tab's example queries, taken from the library, clicked in a real headless Chromium: a click
searches.

Chromium comes from apt, and its absence fails the test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from searchcore.config import Settings
from tests.support import App, browser_page, run_cli, settings_env

pytestmark = pytest.mark.browser


def test_clicking_an_example_query_searches_for_it(settings: Settings, dataset: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    done = run_cli("ingest", str(dataset), "--split", "valid", env=settings_env(settings))
    assert done.returncode == 0, done.stderr
    with App(settings_env(settings), log=tmp_path / "app.log") as app, \
            browser_page(app.url, viewport={"width": 1280, "height": 900}) as page:
        # The examples are the library's own captions, offered once the page has loaded the library's line.
        expect(page.locator("#library-info")).to_contain_text("90 images")
        example = page.locator("#examples").get_by_role("button").first
        text = example.inner_text().strip()
        assert re.fullmatch(r"\w+色的(圆形|正方形|三角形)", text), text
        example.click()

        expect(page.get_by_label("Describe the picture")).to_have_value(text)
        expect(page.locator("#status")).to_contain_text(f"90 results for “{text}”")
        captions = page.locator("#results .caption-label").all_inner_texts()
        assert len(captions) == 24
        assert all(c.endswith(text) for c in captions[:3]), captions
