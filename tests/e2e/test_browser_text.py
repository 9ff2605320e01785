"""A picture found by the words in it, in a real headless Chromium that asks for Chinese."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from demo.shapes import CLASSES, draw
from tests.support import App, app_over_folder, browser_page, sign

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def text_app(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, tiny_model: Path) -> Iterator[App]:
    """`python app.py` over library `shots`: two signs among eight shapes, ingested with --ocr."""
    work = tmp_path_factory.mktemp("text_app")
    root = work / "shots"
    root.mkdir()
    for name, words in (("烤鸭店.png", "欢迎光临北京烤鸭店"), ("通知.png", "会议改到下午三点")):
        sign([(words, (30, 150))], background=(250, 245, 230), ink=(20, 20, 20)).save(root / name)
    for i in range(8):
        draw(*CLASSES[i], random.Random(i)).save(root / f"shape{i}.png")
    with app_over_folder(work, model_cache, root, "shots", "--ocr") as (app, _):
        yield app


def test_a_chinese_browser_finds_a_picture_by_its_words(text_app: App, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with browser_page(text_app.url, locale="zh-CN", viewport={"width": 1280, "height": 900}) as page:
        expect(page.get_by_role("tab", name="搜索", exact=True)).to_be_visible()
        query = page.get_by_label("描述图片")
        query.fill("北京烤鸭")
        page.get_by_role("button", name="搜索", exact=True).click()
        first = page.locator("#results .caption-label").first
        expect(first).to_contain_text("烤鸭店.png")
        page.get_by_role("button", name="Thumbnail 1 of", exact=False).first.click()
        expect(page.locator("#detail mark").first).to_contain_text("北京烤鸭")
        expect(page.locator("#detail")).to_contain_text("欢迎光临北京烤鸭店")
        # 相似度 is the picture's cosine with the query, as the API reports it, not a fused rank value
        hit = httpx.post(f"{text_app.url}/api/search", json={"text": "北京烤鸭", "top_k": 1}).json()[0]
        assert hit["path"] == "烤鸭店.png" and -1 <= hit["similarity"] <= 1 and hit["keyword_score"] > 1
        expect(page.locator("#detail")).to_contain_text(f"相似度 {hit['similarity']:.4f}")
        expect(page.locator("#detail")).to_contain_text(f"关键词得分 {hit['keyword_score']:.4f}")
        page.screenshot(path=str(tmp_path / "text-zh-CN.png"), full_page=True)
