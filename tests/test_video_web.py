"""Moments of videos on the web (issue 20): the API streams a video file with HTTP Range requests under the same
access rules as images, search bodies narrow by media and carry each moment's segment, and the UI marks moments
and plays them from their start.

The Range rules are checked on any file first, then the served app over a real engine that ingested a folder
holding a video written here with PyAV and a few pictures (tiny model, Milvus Lite and SQLite).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from searchcore.errors import QueryError
from searchcore.web.auth import VIDEO_LINK_SECONDS, Access
from searchcore.web.ranges import ByteRange, byte_range
from searchcore.web.ui import caption, clock, moment_text, player

SIZE = 1000


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


def touch(path: Path, delta_ns: int) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + delta_ns))
