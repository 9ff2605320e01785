"""Moments of videos in a real headless Chromium (issue 20): the gallery marks each moment with ▶ and its time
range and holds thumbnails only, and the detail view plays the clicked moment from its start in the page's one
<video>.

The videos are written here with PyAV as H.264 mp4 (Debian's Chromium decodes H.264; the test asks the browser
first). Chromium comes from apt (`apt-get install -y chromium fonts-noto-cjk`), and its absence fails the test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import App, app_over_folder, browser_page
from tests.web.test_video_web import shape_video

pytestmark = pytest.mark.browser

# Short clips of a blue square (a moment apiece), and one video in which the blue square shows only after a red
# circle: a page of 24 moments in all. The red circle is far below MIN_SIMILARITY for the query (under 0.2 with
# the tiny model, the blue squares near 0.9), so the late video's moment starts when the square shows.
CLIPS = 23
LATE = [(0.0, "红色", "圆形"), (6.0, "蓝色", "正方形")]
MIN_SIMILARITY = "0.5"
VIDEO = "document.querySelector('#player video')"


@pytest.fixture(scope="module")
def video_app(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, tiny_model: Path) -> Iterator[App]:
    """`python app.py` over library `clips`: CLIPS one-shape clips and the LATE video, ingested from a folder."""
    work = tmp_path_factory.mktemp("video_app")
    root = work / "clips"
    root.mkdir()
    for n in range(CLIPS):
        shape_video(root / f"clip{n:02d}.mp4", [(0.0, "蓝色", "正方形")], 2)
    shape_video(root / "late.mp4", LATE, 12)
    with app_over_folder(work, model_cache, root, "clips") as (app, printed):
        assert f"{CLIPS + 1} added" in printed, printed
        yield app


def test_a_page_of_moments_shows_thumbnails_and_the_detail_view_plays_one_from_its_start(video_app: App) -> None:
    from playwright.sync_api import expect

    with browser_page(video_app.url, locale="zh-CN", viewport={"width": 1280, "height": 900}) as page:
        assert page.evaluate("document.createElement('video').canPlayType('video/mp4; codecs=\"avc1.42E01E\"')"), \
            "this Chromium cannot play H.264"
        page.locator("#media").get_by_text("视频", exact=True).click()
        threshold = page.locator("#min-similarity input[type=number]")
        threshold.fill(MIN_SIMILARITY)
        threshold.press("Tab")
        query = page.get_by_label("描述图片")
        query.fill("蓝色的正方形")
        page.get_by_role("button", name="搜索", exact=True).click()
        expect(page.locator("#status")).to_contain_text("蓝色的正方形")
        captions = page.locator("#results .caption-label")
        expect(captions).to_have_count(24)
        texts = captions.all_inner_texts()
        assert all(re.match(r"^▶ \d+:\d\d–\d+:\d\d · #\d+ · ", text) for text in texts), texts
        # Thumbnails only: no video element on the page until a moment is opened.
        page.wait_for_function("[...document.querySelectorAll('#results img')].length === 24 && "
                               "[...document.querySelectorAll('#results img')].every(i => i.complete)")
        assert page.locator("video").count() == 0

        late = next(n for n, text in enumerate(texts) if "late.mp4" in text)
        page.get_by_role("button", name=f"Thumbnail {late + 1} of 24").click()
        expect(page.locator("#player video")).to_have_count(1)
        src = page.locator("#player video").get_attribute("src") or ""
        start, end = (float(t) for t in re.search(r"#t=([\d.]+),([\d.]+)$", src).groups())  # type: ignore[union-attr]
        assert start == 6.0 and start < end <= 12.0, src  # the blue square shows from 6 s
        assert page.locator("#player video").get_attribute("preload") == "metadata"
        expect(page.locator("#detail")).to_contain_text("late.mp4")

        page.wait_for_function(f"{VIDEO}.readyState >= 1")
        assert page.evaluate(f"{VIDEO}.currentTime") >= start, "the media fragment seeks to the start before play"
        page.evaluate(f"async () => {{ const v = {VIDEO}; v.muted = true; await v.play(); }}")
        page.wait_for_function(f"{VIDEO}.currentTime > {start} + 0.2 || {VIDEO}.ended")
        playing = page.evaluate(f"({{time: {VIDEO}.currentTime, error: {VIDEO}.error}})")
        assert playing["error"] is None and playing["time"] >= start, playing

        # Another moment replaces the player: still one <video> on the page.
        other = next(n for n, text in enumerate(texts) if "late.mp4" not in text)
        page.get_by_role("button", name=f"Thumbnail {other + 1} of 24").click()
        expect(page.locator("#player video")).not_to_have_attribute("src", src)
        assert page.locator("video").count() == 1
