"""Moments of videos on the web (issue 20): the API streams a video file with HTTP Range requests under the same
access rules as images, search bodies narrow by media and carry each moment's segment, and the UI marks moments
and plays them from their start.

The Range rules are checked on any file first, then the served app over a real engine that ingested a folder
holding a video written here with PyAV and a few pictures (tiny model, Milvus Lite and SQLite).
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import httpx
import numpy as np
import pytest

from demo.shapes import draw
from searchcore.engine import Engine
from searchcore.errors import QueryError
from searchcore.models.encoder import Encoder
from searchcore.sources.datasets import folder_image_id
from searchcore.web.auth import VIDEO_LINK_SECONDS, Access
from searchcore.web.ranges import ByteRange, byte_range
from searchcore.web.ui.formatting import caption, clock, moment_text, player
from searchcore.web.ui.layout import SearchApp
from tests.sources.test_videos import write_video
from tests.support import Served, tiny_settings

SIZE = 1000
USERS = (("alice", "wonderland"),)
# The video: (from second, colour, shape), 12 s in all; the pictures beside it.
SCHEDULE = [(0.0, "红色", "圆形"), (4.0, "蓝色", "正方形"), (8.0, "绿色", "三角形")]
PICTURES = [("红色", "圆形"), ("蓝色", "正方形"), ("黄色", "三角形")]


@pytest.mark.parametrize("header, expected", [
    (None, None),
    ("", None),
    ("bytes=0-", (0, 1000)),  # what a browser asks for first
    ("bytes=0-99", (0, 100)),
    ("bytes=500-", (500, 1000)),  # open-ended: to the end
    ("bytes=990-5000", (990, 1000)),  # past the end: cut at the end
    ("bytes=-10", (990, 1000)),  # a suffix: the last 10 bytes
    ("bytes=-5000", (0, 1000)),  # a suffix longer than the file: all of it
    ("bytes=999-999", (999, 1000)),
    ("bytes=10-19, 50-59", (10, 20)),  # several ranges: the first is answered
    ("bytes=2000-3000,0-9", (0, 10)),  # ... the first the file has
    ("BYTES=0-0", (0, 1)),
    ("items=0-9", None),  # a unit other than bytes is ignored: the whole file
])
def test_a_range_header_asks_for_these_bytes(header: str | None, expected: tuple[int, int] | None) -> None:
    got = byte_range(header, SIZE)
    assert (None if got is None else (got.start, got.stop)) == expected
    if got is not None:
        assert got.content_range() == f"bytes {expected[0]}-{expected[1] - 1}/{SIZE}"  # type: ignore[index]


@pytest.mark.parametrize("header, size", [
    ("bytes=1000-", SIZE),  # starts at the end
    ("bytes=1000-2000,3000-", SIZE),  # none of the ranges is in the file
    ("bytes=-0", SIZE),  # an empty suffix
    ("bytes=0-", 0),  # an empty file has no byte to send
    ("bytes=-5", 0),
    ("bytes=20-10", SIZE),  # backwards
    ("bytes=abc", SIZE),
    ("bytes=", SIZE),
    ("bytes=-", SIZE),
    ("bytes=0-9,x", SIZE),  # one bad range spoils the header
    ("bytes=1.5-2", SIZE),
    ("bytes=٣-٤", SIZE),  # digits, but not ASCII ones
])
def test_a_range_the_file_cannot_satisfy_is_refused_with_its_size(header: str, size: int) -> None:
    with pytest.raises(QueryError) as raised:
        byte_range(header, size)
    assert raised.value.kind == "range_unsatisfiable" and raised.value.params["size"] == size
    assert "字节" in raised.value.render("zh")


def test_a_byte_range_names_its_last_byte() -> None:
    assert ByteRange(0, 1, 1).content_range() == "bytes 0-0/1"


@pytest.mark.parametrize("seconds, up, text", [
    (0, False, "0:00"), (12.0, False, "0:12"), (12.9, False, "0:12"), (17.2, True, "0:18"), (18.0, True, "0:18"),
    (59.99, False, "0:59"), (61, False, "1:01"), (3599, False, "59:59"), (3600, False, "1:00:00"),
    (4 * 3600 + 62.5, False, "4:01:02"),
])
def test_times_in_a_video_read_as_a_clock(seconds: float, up: bool, text: str) -> None:
    assert clock(seconds, up=up) == text


def test_a_moment_in_the_gallery_starts_with_a_play_mark_and_its_time_range() -> None:
    hit = {"rank": 3, "image_id": 77, "score": 0.5, "similarity": 0.31, "path": "旅行/海边.mp4", "taken": None,
           "caption": "", "video": {"video_id": 9, "start": 12.0, "end": 17.4, "duration": 65.0}}
    assert caption(hit) == "▶ 0:12–0:18 · #3 · 0.310 · 77 · 旅行/海边.mp4"
    picture = {**hit, "video": None, "path": "旅行/海边.jpg"}
    assert caption(picture) == "#3 · 0.310 · 77 · 旅行/海边.jpg"
    assert moment_text(0, 2) == "0:00–0:02"


def test_the_player_loads_metadata_only_and_plays_the_moment() -> None:
    html = player("/api/videos/9?library=clips&token=1.ab", 12.0, 17.4)
    assert html.count("<video") == 1 and 'preload="metadata"' in html and "controls" in html
    assert 'src="/api/videos/9?library=clips&amp;token=1.ab#t=12.000,17.400"' in html


def test_a_signed_video_link_opens_one_video_for_a_while() -> None:
    access = Access(users=(("alice", "wonderland"),))
    url = access.video_url("clips", 9, signed=True, now=1_000_000)
    assert url.startswith("/api/videos/9?library=clips&token=")
    token = url.split("token=")[1]
    assert access.video_token_valid(token, "clips", 9, now=1_000_000 + VIDEO_LINK_SECONDS - 1)
    assert not access.video_token_valid(token, "clips", 9, now=1_000_000 + VIDEO_LINK_SECONDS + 1)
    assert not access.video_token_valid(token, "clips", 10, now=1_000_000)
    assert not access.video_token_valid(token, "other", 9, now=1_000_000)
    assert not Access(users=access.users).video_token_valid(token, "clips", 9, now=1_000_000), "another process"
    expires, mac = token.split(".")
    assert not access.video_token_valid(f"{int(expires) + 3600}.{mac}", "clips", 9, now=1_000_000)
    for bad in ("", ".", "abc", f"{expires}.", f"²{expires}.{mac}"):
        assert not access.video_token_valid(bad, "clips", 9, now=1_000_000)
    # Without --auth there is nothing to sign, and the API's own links are never signed.
    assert Access().video_url("clips", 9, signed=True) == "/api/videos/9?library=clips"
    assert access.video_url("clips", 9) == "/api/videos/9?library=clips"


def shape_video(path: Path, schedule: list[tuple[float, str, str]], duration: float, fps: int = 5) -> Path:
    """An H.264 video of one shape picture after another: each schedule entry's from its second on."""
    frames = []
    for n in range(round(duration * fps)):
        start, colour, shape = [entry for entry in schedule if entry[0] <= n / fps + 1e-9][-1]
        frames.append((n / fps, np.asarray(draw(colour, shape, random.Random(f"{path.name}{start}")))))
    return write_video(path, frames, gop=fps)


def write_clips(root: Path) -> Path:
    """A folder with the SCHEDULE video and the PICTURES."""
    root.mkdir(parents=True)
    shape_video(root / "shapes.mp4", SCHEDULE, 12)
    for colour, shape in PICTURES:
        draw(colour, shape, random.Random(colour + shape)).save(root / f"{colour}{shape}.png")
    return root


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clips(tmp_path_factory.mktemp("clips") / "clips")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, torch_encoder: Encoder,
           clips: Path) -> Iterator[Engine]:
    """One engine for the module, holding the clips folder in library `clips`."""
    settings = tiny_settings(tmp_path_factory.mktemp("video_web"), model_cache, backend="torch", precision="fp32",
                             library="clips")
    eng = Engine(settings, encoder=torch_encoder)
    report = eng.ingest(clips, library="clips")
    assert not report.bad and report.added == len(PICTURES) + 1, report.summary()
    yield eng
    eng.close()


def moment(http: httpx.Client, query: str = "蓝色的正方形", **body: object) -> dict:
    hits = http.post("/api/search", json={"text": query, "top_k": 5, "media": "video", **body}).json()
    assert hits and hits[0]["media"] == "video", hits
    return hits[0]


def test_search_bodies_narrow_by_media_and_moments_carry_their_segment(served: Served, clips: Path) -> None:
    with httpx.Client(base_url=served.url) as http:
        everything = http.post("/api/search", json={"text": "蓝色的正方形", "top_k": 20}).json()
        assert {h["media"] for h in everything} == {"image", "video"}
        pictures = http.post("/api/search", json={"text": "蓝色的正方形", "top_k": 20, "media": "image"}).json()
        assert len(pictures) == len(PICTURES) and {h["media"] for h in pictures} == {"image"}
        assert all(h["video"] is None for h in pictures)
        moments = http.post("/api/search", json={"text": "蓝色的正方形", "top_k": 20, "media": "video"}).json()
        assert moments and {h["media"] for h in moments} == {"video"}
        video_id = folder_image_id((clips / "shapes.mp4").read_bytes())  # the folder pictures' rule
        for hit in moments:
            video = hit["video"]
            assert set(video) == {"path", "start", "end", "url"}
            assert video["path"] == "shapes.mp4" and 0 <= video["start"] < video["end"] <= 12.0 + 1e-6
            assert video["url"] == f"/api/videos/{video_id}?library=clips"
            assert hit["url"] == f"/api/images/clips/{hit['image_id']}"  # the best frame's thumbnail
            assert http.get(hit["url"]).headers["content-type"] == "image/jpeg"
        best = moments[0]["video"]
        assert best["start"] < 8.0 and best["end"] > 4.0, "the best moment overlaps the blue square's 4-8 s"
        refused = http.post("/api/search", json={"text": "蓝色的正方形", "media": "audio"})
        assert refused.status_code == 422


def test_a_video_is_served_whole_and_by_byte_ranges_exactly(served: Served, clips: Path) -> None:
    data = (clips / "shapes.mp4").read_bytes()
    size = len(data)
    with httpx.Client(base_url=served.url) as http:
        url = moment(http)["video"]["url"]
        whole = http.get(url)
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
        assert int(whole.headers["content-length"]) == size
        for asked, (start, stop) in {"bytes=0-": (0, size), "bytes=100-1099": (100, 1100),
                                     f"bytes={size - 300}-": (size - 300, size), "bytes=-300": (size - 300, size),
                                     f"bytes=10-19,{size - 5}-": (10, 20),
                                     f"bytes={size - 10}-{size + 1000}": (size - 10, size)}.items():
            part = http.get(url, headers={"Range": asked})
            assert part.status_code == 206, (asked, part.status_code)
            assert part.content == data[start:stop], asked
            assert part.headers["content-range"] == f"bytes {start}-{stop - 1}/{size}", asked
            assert int(part.headers["content-length"]) == stop - start
        for bad in (f"bytes={size}-", "bytes=50-10", "bytes=x-y"):
            refused = http.get(url, headers={"Range": bad})
            assert refused.status_code == 416, bad
            assert refused.headers["content-range"] == f"bytes */{size}"
            assert refused.json()["kind"] == "range_unsatisfiable"
        head = http.head(url, headers={"Range": "bytes=0-99"})
        assert head.status_code == 206 and head.content == b"" and head.headers["content-length"] == "100"
        assert head.headers["content-range"] == f"bytes 0-99/{size}"
        # If-Range: the same validator keeps the range; another one (the file changed) gets the whole file.
        etag = whole.headers["etag"]
        assert http.get(url, headers={"Range": "bytes=0-9", "If-Range": etag}).status_code == 206
        stale = http.get(url, headers={"Range": "bytes=0-9", "If-Range": '"0-0"'})
        assert stale.status_code == 200 and stale.content == data


def test_unknown_videos_are_404_and_bad_ids_400(served: Served) -> None:
    with httpx.Client(base_url=served.url) as http:
        assert http.get("/api/videos/999999?library=clips").status_code == 404
        assert http.get("/api/videos/abc?library=clips").status_code == 400
        assert http.get("/api/videos/1?library=bad-name!").status_code == 400
        assert http.get("/api/videos/1?library=nosuch").status_code == 404
        picture = http.post("/api/search", json={"text": "红色的圆形", "media": "image", "top_k": 1}).json()[0]
        assert http.get(f"/api/videos/{picture['image_id']}?library=clips").status_code == 404, "a picture's id"
        assert list(http.get("/openapi.json").json()["paths"]["/api/videos/{video_id}"]) == ["get"]


def test_a_moved_or_changed_video_file_is_404_or_410(engine: Engine, tmp_path: Path) -> None:
    folder = write_clips(tmp_path / "changing")
    engine.ingest(folder, library="changing")
    app = Served(engine, Access())
    try:
        with httpx.Client(base_url=app.url) as http:
            url = moment(http, library="changing")["video"]["url"]
            assert http.get(url, headers={"Range": "bytes=0-9"}).status_code == 206
            video = folder / "shapes.mp4"
            stat = video.stat()
            os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
            changed = http.get(url)
            assert changed.status_code == 410 and changed.json()["kind"] == "video_file_changed"
            video.unlink()
            gone = http.get(url)
            assert gone.status_code == 404 and gone.json()["kind"] == "video_file_missing"
    finally:
        app.stop()


def test_with_auth_a_video_needs_the_login_or_a_link_the_ui_signed(engine: Engine) -> None:
    app = Served(engine, Access(users=USERS))
    try:
        with httpx.Client(base_url=app.url) as http:
            assert http.post("/api/search", json={"text": "蓝色的正方形"}).status_code == 401
            url = http.post("/api/search", json={"text": "蓝色的正方形", "media": "video"},
                            auth=USERS[0]).json()[0]["video"]["url"]
            refused = http.get(url, headers={"Range": "bytes=0-9"})
            assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
            assert http.get(url, headers={"Range": "bytes=0-9"}, auth=("alice", "wrong")).status_code == 401
            assert http.get(url, headers={"Range": "bytes=0-9"}, auth=USERS[0]).status_code == 206
            # The UI's player link works without the basic-auth login (the page holds Gradio's cookie instead).
            ui: SearchApp = app.app.state.search_app
            _, state, _ = ui.search("蓝色的正方形", 5, "clips", media="video")
            _, _, _, _, html = ui.select(state, gr.SelectData(None, {"index": 0, "value": None}))
            signed = re.search(r'src="([^"#]+)#t=', html)[1].replace("&amp;", "&")  # type: ignore[index]
            assert "token=" in signed and signed.startswith(url)
            assert http.get(signed, headers={"Range": "bytes=0-9"}).status_code == 206
            other = signed.replace(f"/api/videos/{url.split('/')[3].split('?')[0]}?", "/api/videos/1?")
            assert http.get(other, headers={"Range": "bytes=0-9"}).status_code == 401, "a link opens its video only"
            assert http.get(signed[:-4] + "0000").status_code == 401
    finally:
        app.stop()


def test_the_ui_marks_moments_and_plays_the_clicked_one_from_its_start(engine: Engine) -> None:
    app = SearchApp(engine)
    gallery, state, _ = app.search("蓝色的正方形", 20, "clips", media="video")
    texts = [text for _, text in gallery]
    assert texts and all(re.match(r"^▶ \d+:\d\d–\d+:\d\d · #\d+ · ", t) for t in texts), texts
    hit = state["hits"][state["shown"][0]]  # type: ignore[index]
    picture, meta, image_id, _, html = app.select(state, gr.SelectData(None, {"index": 0, "value": None}))
    assert picture is None and image_id == str(hit["image_id"])
    start = hit["video"]["start"]
    assert html.count("<video") == 1 and f"#t={start:.3f}," in html and 'preload="metadata"' in html
    assert "▶ " + moment_text(start, hit["video"]["end"]) in meta and "shapes.mp4" in meta
    pictures, _, _ = app.search("蓝色的正方形", 20, "clips", media="image")
    assert len(pictures) == len(PICTURES) and not any(text.startswith("▶") for _, text in pictures)
    both, state, _ = app.search("蓝色的正方形", 20, "clips")
    assert {text.startswith("▶") for _, text in both} == {True, False}
    first_picture = next(n for n, (_, text) in enumerate(both) if not text.startswith("▶"))
    picture, _, _, _, html = app.select(state, gr.SelectData(None, {"index": first_picture, "value": None}))
    assert picture is not None and html == "", "a picture shows no player"
    info = engine.info("clips")
    line = app.library_line("clips")
    assert info.videos >= 1 and f"{info.count - info.frames:,} images · {info.videos:,} videos" in line, line
