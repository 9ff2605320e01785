"""A folder of photos searched in a real headless Chromium: the page speaks the browser's language, and the
folder filter narrows the gallery.

Chromium comes from apt (`apt-get install -y chromium fonts-noto-cjk`), and its absence fails the test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import App, app_over_folder, browser_page, write_photo_folders

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def photo_app(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, tiny_model: Path) -> Iterator[App]:
    """`python app.py` over library `photos`, 24 pictures ingested from a folder with two dated sub-folders."""
    work = tmp_path_factory.mktemp("photo_app")
    root = write_photo_folders(work / "photos")
    with app_over_folder(work, model_cache, root, "photos") as (app, _):
        yield app


def test_a_chinese_browser_gets_the_page_in_chinese(photo_app: App, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with browser_page(photo_app.url, locale="zh-CN", viewport={"width": 1280, "height": 900}) as page:
        for name in ("搜索", "重复图片", "建库"):
            expect(page.get_by_role("tab", name=name, exact=True)).to_be_visible()
        # Opened first: Gradio mounts an accordion's fields as it opens, and can reset one typed into meanwhile.
        page.get_by_text("筛选", exact=True).click()
        since = page.get_by_label("拍摄日期不早于（YYYY-MM-DD）")
        expect(since).to_be_visible()
        expect(page.locator("#library-info")).to_contain_text("图库 photos · 24 张图片 · 最近更新")
        query = page.get_by_label("描述图片")
        query.fill("红色的圆形")
        page.get_by_role("button", name="搜索", exact=True).click()
        expect(page.locator("#status")).to_contain_text("在图库 photos 中找到“红色的圆形”的 24 个结果")
        page.get_by_role("button", name="Thumbnail 1 of 24").click()
        expect(page.locator("#detail")).to_contain_text(re.compile(r"拍摄时间：202[34]-06-01 12:00"))

        since.fill("2024-13-45")
        expect(since).to_have_value("2024-13-45")
        query.press("Enter")
        expect(page.get_by_text("出错了：起始日期必须写成 YYYY-MM-DD").first).to_be_visible()
        page.screenshot(path=str(tmp_path / "zh-CN.png"), full_page=True)


def test_an_english_browser_gets_the_page_in_english(photo_app: App) -> None:
    from playwright.sync_api import expect

    with browser_page(photo_app.url, locale="en-US") as page:
        for name in ("Search", "Duplicates", "Build"):
            expect(page.get_by_role("tab", name=name, exact=True)).to_be_visible()
        expect(page.locator("#library-info")).to_contain_text("Library photos · 24 images · updated ")
        expect(page.get_by_role("tab", name="搜索")).to_have_count(0)


def test_a_folder_typed_in_the_filters_narrows_the_gallery(photo_app: App) -> None:
    from playwright.sync_api import expect

    with browser_page(photo_app.url, locale="en-US", viewport={"width": 1280, "height": 900}) as page:
        page.get_by_text("Filters", exact=True).click()  # opened first, as above
        folder = page.locator("#folder").get_by_role("textbox")
        expect(folder).to_be_visible()
        query = page.get_by_label("Describe the picture")
        query.fill("红色的圆形")
        query.press("Enter")
        expect(page.locator("#status")).to_contain_text("24 results for “红色的圆形”")
        before = page.locator("#results .caption-label").all_inner_texts()
        assert {text.split(" · ")[3].split("/")[0] for text in before} == {"2023", "2024"}, before

        folder.fill("2024/城市")
        expect(folder).to_have_value("2024/城市")
        query.press("Enter")
        expect(page.locator("#status")).to_contain_text("12 results for “红色的圆形”")
        after = page.locator("#results .caption-label").all_inner_texts()
        assert len(after) == 12 and all(" · 2024/城市/" in text for text in after), after
