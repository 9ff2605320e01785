"""Search the way people ask, in a real headless Chromium that asks for Chinese: a time query shows what it was
understood as, and 合并相似 folds a burst of near-identical pictures into one."""

from __future__ import annotations

import datetime as dt
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.shapes import CLASSES, caption, draw
from tests.support import App, app_over_folder, browser_page, burst_variants

pytestmark = pytest.mark.browser


def last_month() -> tuple[dt.date, dt.date]:
    first = dt.date.today().replace(day=1)
    end = first - dt.timedelta(days=1)
    return end.replace(day=1), end


@pytest.fixture(scope="module")
def reading_app(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, tiny_model: Path) -> Iterator[App]:
    """`python app.py` over library `burst`: six shapes, half of them taken last month, and a burst of five."""
    work = tmp_path_factory.mktemp("reading_app")
    root = work / "burst"
    root.mkdir()
    rng = random.Random(5)
    start, _ = last_month()
    for n, cls in enumerate(CLASSES[1:7], 1):
        path = root / f"{n:02d}.png"
        draw(*cls, rng, (96, 96)).save(path)
        when = dt.datetime(start.year, start.month, 10, 12) if n % 2 else dt.datetime(2020, 5, 1, 12)
        os.utime(path, (when.timestamp(), when.timestamp()))
    for name, data in burst_variants(draw(*CLASSES[0], rng, (120, 90))).items():
        (root / name).write_bytes(data)
    with app_over_folder(work, model_cache, root, "burst") as (app, _):
        yield app


def test_a_time_query_shows_its_reading_and_a_burst_folds(reading_app: App, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    since, until = last_month()
    with browser_page(reading_app.url, locale="zh-CN", viewport={"width": 1280, "height": 900}) as page:
        query = page.get_by_label("描述图片")
        query.fill("上个月拍的绿色圆形")
        page.get_by_role("button", name="搜索", exact=True).click()
        expect(page.locator("#status")).to_contain_text(f"理解为：{since} 至 {until} · 绿色圆形")
        expect(page.locator("#results .caption-label")).to_have_count(3)  # the pictures of last month only

        query.fill(caption(*CLASSES[0]))
        page.get_by_role("button", name="搜索", exact=True).click()
        expect(page.locator("#results .caption-label")).to_have_count(11)
        expect(page.locator("#status")).not_to_contain_text("理解为")
        page.get_by_label("合并相似").check()
        page.get_by_role("button", name="搜索", exact=True).click()
        expect(page.locator("#results .caption-label")).to_have_count(7)
        expect(page.locator("#results .caption-label").first).to_contain_text("+4 张相似")
        page.screenshot(path=str(tmp_path / "reading-zh-CN.png"), full_page=True)
