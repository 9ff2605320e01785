"""The app as a user meets it: `python app.py` driven by a real headless Chromium.

Build a library in the Build tab, search it in the Search tab, open a result, and save
docs/screenshot.png. Chromium comes from apt (`apt-get install -y chromium fonts-noto-cjk`);
without it this test fails rather than skips, so CI cannot pass it silently.
"""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import pytest

from demo.sample_data import write_dataset
from searchcore.config import Settings
from tests.support import ROOT, App, browser_page, settings_env

pytestmark = pytest.mark.browser

SCREENSHOT = ROOT / "docs" / "screenshot.png"


def test_build_a_library_then_search_it_in_a_browser(settings: Settings, dataset: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with App(settings_env(settings), log=tmp_path / "app.log") as app, \
            browser_page(app.url, viewport={"width": 1280, "height": 900}) as page:
        page.get_by_role("tab", name="Build").click()
        page.get_by_label("Dataset folder on the server").fill(str(dataset))
        split = page.get_by_role("combobox", name="Split", exact=True)
        expect(split).to_have_value("train")  # filled from the folder's splits
        split.click()
        page.get_by_role("option", name="valid").click()
        page.get_by_label("Library name").fill("shapes")
        page.get_by_role("button", name="Ingest", exact=True).click()
        expect(page.locator("#summary")).to_contain_text("90 added, 0 already present, 0 bad")

        page.get_by_role("tab", name="Search").click()
        expect(page.get_by_role("combobox", name="Library", exact=True)).to_have_value("shapes")
        query = page.get_by_label("Describe the picture")
        query.fill("红色的圆形")
        query.press("Enter")
        expect(page.locator("#status")).to_contain_text("90 results for “红色的圆形” in library shapes · page 1 of 4")
        captions = page.locator("#results .caption-label").all_inner_texts()
        assert len(captions) == 24, "24 a page"
        assert all(c.endswith("红色的圆形") for c in captions[:3]), captions
        page.wait_for_function("[...document.querySelectorAll('#results img')]"
                               ".every(img => img.complete && img.naturalWidth > 0)")
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(tmp_path / "screenshot.png"), full_page=True)
        shutil.copyfile(tmp_path / "screenshot.png", SCREENSHOT)

        first_id = captions[0].split(" · ")[2]
        page.get_by_role("button", name="Next page →").click()
        expect(page.locator("#status")).to_contain_text("page 2 of 4 · results 25–48")
        expect(page.locator("#results .caption-label").first).to_have_text(re.compile(r"^#25 · "))
        page.get_by_role("button", name="← Previous page").click()
        expect(page.locator("#results .caption-label").first).to_have_text(captions[0])

        page.get_by_role("button", name="Thumbnail 1 of 24").click()
        expect(page.locator("#detail")).to_contain_text(first_id)
        page.get_by_role("button", name="More like this").click()
        expect(page.locator("#status")).to_contain_text(f"image {first_id}")
        expect(page.locator("#results .caption-label").first).to_contain_text(f" · {first_id} · ")


def test_build_tab_ingests_a_url_safe_tsv(settings: Settings, tmp_path: Path) -> None:
    """A {split}_imgs.tsv written with base64.urlsafe_b64encode, which cn_clip reads, is built and searchable."""
    from playwright.sync_api import expect

    root = write_dataset(tmp_path / "urlsafe", "valid", 18, seed=5, lmdb=False)
    tsv = root / "valid_imgs.tsv"
    rows = [line.split("\t") for line in tsv.read_text().splitlines()]
    tsv.write_text("".join(f"{i}\t{base64.urlsafe_b64encode(base64.b64decode(b)).decode()}\n" for i, b in rows))
    assert "-" in tsv.read_text() and "_" in tsv.read_text()
    with App(settings_env(settings), log=tmp_path / "app.log") as app, browser_page(app.url) as page:
        page.get_by_role("tab", name="Build").click()
        page.get_by_label("Dataset folder on the server").fill(str(root))
        expect(page.get_by_role("combobox", name="Split", exact=True)).to_have_value("valid")
        page.get_by_label("Library name").fill("urlsafe")
        page.get_by_role("button", name="Ingest", exact=True).click()
        expect(page.locator("#summary")).to_contain_text("18 added, 0 already present, 0 bad")

        page.get_by_role("tab", name="Search").click()
        expect(page.get_by_role("combobox", name="Library", exact=True)).to_have_value("urlsafe")
        page.get_by_label("Describe the picture").fill("红色的圆形")
        page.get_by_label("Describe the picture").press("Enter")
        expect(page.locator("#status")).to_contain_text("18 results")
        expect(page.locator("#results .caption-label").first).to_contain_text("红色的圆形")
