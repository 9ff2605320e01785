"""A skipped record's reason reads in the page's language: a Chinese browser that builds a library from a folder
holding a corrupt JPEG is told why in Chinese, in a real headless Chromium."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from searchcore.config import Settings
from searchcore.errors import MESSAGES
from tests.support import App, browser_page, settings_env

pytestmark = pytest.mark.browser


def jpeg(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(out, "JPEG")
    return out.getvalue()


def test_a_chinese_browser_is_told_in_chinese_why_a_corrupt_jpeg_was_skipped(settings: Settings,
                                                                              tmp_path: Path) -> None:
    from playwright.sync_api import expect

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "red.jpg").write_bytes(jpeg((200, 30, 30)))
    whole = jpeg((30, 30, 200))
    (folder / "broken.jpg").write_bytes(whole[: len(whole) // 2])  # its second half lost: Pillow reads it short
    english, chinese = MESSAGES["image_corrupt"]
    with App(settings_env(settings), log=tmp_path / "app.log") as app, \
            browser_page(app.url, locale="zh-CN", viewport={"width": 1280, "height": 900}) as page:
        page.get_by_role("tab", name="建库").click()
        page.get_by_label("服务器上的文件夹").check()
        page.get_by_label("服务器上的图片文件夹").fill(str(folder))
        page.get_by_label("图库名称").fill("photos")
        page.get_by_role("button", name="导入", exact=True).click()
        summary = page.locator("#summary")
        expect(summary).to_contain_text("broken.jpg")
        shown = summary.inner_text()
        page.screenshot(path=str(tmp_path / "bad-record-zh-CN.png"), full_page=True)
    line = next(line for line in shown.splitlines() if "broken.jpg" in line)
    assert chinese.split("（")[0] in line, line  # 图片已损坏或不完整
    assert english.split(" (")[0] not in line, line  # not "image is corrupt or truncated"
