"""Videos in a folder library (issue 20): each video sampled into frames that are searched beside pictures, a
matching stretch of a video found as one moment, re-scans and --sync that treat a video as one file, and bad
videos reported without stopping the ingest.

Every video is written here with PyAV: the tiny model's coloured shapes (demo/shapes.py), each shown for a known
stretch of time, so a shape query has one true interval in one video.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from demo.shapes import draw
from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.errors import MassRemovalError, QueryError, VideoUnavailableError
from searchcore.jobs.watch import FolderWatcher
from searchcore.models.encoder import Encoder
from searchcore.sources import videos as video_source
from searchcore.stores import vectors as vector_store
from searchcore.stores.filters import Filters
from tests.indexing.test_photos import picture, write
from tests.sources.test_videos import long_video, write_video
from tests.support import CJK_FONT, CliRun, cjk_font, wait_until

RED_CIRCLE, BLUE_SQUARE, GREEN_TRIANGLE = ("红色", "圆形"), ("蓝色", "正方形"), ("绿色", "三角形")
YELLOW_SQUARE, PURPLE_CIRCLE, BLACK_TRIANGLE = ("黄色", "正方形"), ("紫色", "圆形"), ("黑色", "三角形")
SIZE = (96, 96)
FPS = 5


def shapes_video(path: Path, schedule: list[tuple[float, tuple[str, str]]], duration: float,
                 size: tuple[int, int] = SIZE, created: str | None = None) -> Path:
    """A video showing each (start, shape) of the schedule until the next one's start; a keyframe a second."""
    pictures = {cls: np.asarray(draw(*cls, random.Random(7), size)) for _, cls in schedule}
    frames = []
    for i in range(round(duration * FPS)):
        now = i / FPS
        shown = [cls for start, cls in schedule if start <= now + 1e-9][-1]
        frames.append((now, pictures[shown]))
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, frames, gop=FPS, created=created)


# walk.mp4: 0-8 s a red circle, 8-16 s a blue square, 16-24 s a green triangle
WALK = [(0.0, RED_CIRCLE), (8.0, BLUE_SQUARE), (16.0, GREEN_TRIANGLE)]
# park.mp4: 0-10 s a yellow square, 10-20 s a purple circle
PARK = [(0.0, YELLOW_SQUARE), (10.0, PURPLE_CIRCLE)]


@pytest.fixture
def media(tmp_path: Path) -> Path:
    """A folder with two videos and two pictures."""
    root = tmp_path / "media"
    shapes_video(root / "videos" / "walk.mp4", WALK, 24, created="2023-06-01T08:00:00.000000Z")
    shapes_video(root / "videos" / "park.mov", PARK, 20)
    write(root / "photos" / "black.jpg", picture(BLACK_TRIANGLE, 1))
    write(root / "photos" / "blue.jpg", picture(BLUE_SQUARE, 2))
    return root


def video_id_of(engine: Engine, root: Path, path: str) -> int:
    """The id a video file was recorded with."""
    return engine.images.files(engine.settings.library, str(root.resolve()))[path].image_id


def frame_ids(engine: Engine, video_id: int) -> list[int]:
    return [f for f, _ in engine.images.video_frames(engine.settings.library, [video_id]).get(video_id, [])]


def moments_of(results: list, path: str) -> list:
    return [r for r in results if r.video is not None and r.video.path == path]


def test_a_shape_query_finds_its_moment_in_the_right_video(engine: Engine, media: Path) -> None:
    report = engine.ingest(media)
    assert report.bad == []
    assert (report.added, report.videos) == (4, 2)
    assert report.frames == 12 + 10  # every 2 s of 24 s and of 20 s

    results = engine.search_text("绿色的三角形", 10, filters=Filters.parse(media="video"))
    best = results[0]
    assert best.video is not None and best.video.path == "videos/walk.mp4"
    assert best.video.start < 24 and best.video.end > 16, "the segment overlaps the true interval 16-24 s"
    # Every frame of this small library is a hit: the red and blue frames must not stretch the green segment.
    assert best.video.start >= 14, f"the segment starts at {best.video.start} s, before the triangle shows"
    walk = moments_of(results, "videos/walk.mp4")
    assert walk[0] is best, "no other segment of the video ranks above it"
    assert len({(m.video.start, m.video.end) for m in walk}) == len(walk), "a video appears once per segment"
    data = best.to_json()
    assert data["media"] == "video"
    assert data["video"] == {"path": "videos/walk.mp4", "start": best.video.start, "end": best.video.end}
    assert data["image_id"] in frame_ids(engine, best.video.video_id)


def test_rescan_samples_no_unchanged_video(engine: Engine, media: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine.ingest(media)
    opened: list[str] = []
    real = video_source.FrameSampler.__iter__

    def sampled(self: video_source.FrameSampler):  # type: ignore[no-untyped-def]
        opened.append(self.path.name)
        return real(self)

    monkeypatch.setattr(video_source.FrameSampler, "__iter__", sampled)
    again = engine.ingest(media)
    assert opened == []
    assert (again.added, again.unchanged, again.frames) == (0, 4, 0)


def test_sync_removes_every_frame_of_a_deleted_video(engine: Engine, media: Path) -> None:
    engine.ingest(media)
    library = engine.settings.library
    walk_id = video_id_of(engine, media, "videos/walk.mp4")
    frames = frame_ids(engine, walk_id)
    assert len(frames) == 12
    (media / "videos" / "walk.mp4").unlink()
    report = engine.ingest(media, sync=True)
    assert report.removed == 1, "a video is one file"
    assert engine.images.get_many(library, frames) == {}
    assert engine.vectors.existing(library, frames) == set()
    assert engine.images.get_videos(library, [walk_id]) == {}
    with pytest.raises(QueryError):
        engine.video(walk_id)


def test_video_file_is_served_while_it_is_the_one_indexed(engine: Engine, media: Path) -> None:
    engine.ingest(media)
    result = engine.search_text("黄色的正方形", 1, filters=Filters.parse(media="video"))[0]
    assert result.video is not None
    path = engine.video_file(result.video.video_id)
    assert path == media / "videos" / "park.mov"
    os.utime(path, (1, 1))
    with pytest.raises(VideoUnavailableError) as changed:
        engine.video_file(result.video.video_id)
    assert changed.value.changed
    path.unlink()
    with pytest.raises(VideoUnavailableError) as missing:
        engine.video_file(result.video.video_id)
    assert not missing.value.changed


def test_media_filter(engine: Engine, media: Path) -> None:
    engine.ingest(media)
    pictures = engine.search_text("蓝色的正方形", 10, filters=Filters.parse(media="image"))
    assert pictures and all(r.video is None for r in pictures)
    moments = engine.search_text("蓝色的正方形", 10, filters=Filters.parse(media="video"))
    assert moments and all(r.video is not None for r in moments)
    both = engine.search_text("蓝色的正方形", 10)
    assert {r.video is None for r in both} == {True, False}
    with pytest.raises(QueryError):
        Filters.parse(media="audio")


def test_bad_videos_are_reported_and_the_rest_ingested(engine: Engine, media: Path) -> None:
    bad = media / "bad"
    bad.mkdir()
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "notes.mp4").write_text("not a video at all\n" * 50)
    whole = (media / "videos" / "walk.mp4").read_bytes()
    (bad / "cut.mp4").write_bytes(whole[:len(whole) // 2])
    with av.open(str(bad / "sound.mp4"), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    report = engine.ingest(media)
    reasons = {b.file: str(b.reason) for b in report.bad}
    assert sorted(reasons) == ["bad/cut.mp4", "bad/empty.mp4", "bad/notes.mp4", "bad/sound.mp4"]
    assert "empty" in reasons["bad/empty.mp4"]
    assert "audio" in reasons["bad/sound.mp4"]
    assert (report.added, report.videos) == (4, 2)
    library = engine.settings.library
    stored = set(engine.images.ids(library))
    assert stored == set(engine.vectors.ids(library)), "no frame of a bad video is left in either store"
    assert json.loads(json.dumps(report.to_json()))["bad"]
    shutil.rmtree(bad)


def test_a_moved_video_keeps_its_frames_and_is_not_sampled(engine: Engine, media: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    engine.ingest(media)
    walk_id = video_id_of(engine, media, "videos/walk.mp4")
    frames = frame_ids(engine, walk_id)
    (media / "2023").mkdir()
    (media / "videos" / "walk.mp4").rename(media / "2023" / "walk.mp4")
    monkeypatch.setattr(video_source.FrameSampler, "__iter__", lambda self: pytest.fail("a move samples nothing"))
    report = engine.ingest(media, sync=True)
    assert (report.moved, report.removed, report.added) == (1, 0, 0)
    assert frame_ids(engine, walk_id) == frames
    best = engine.search_text("绿色的三角形", 1, filters=Filters.parse(folder="2023"))[0]
    assert best.video is not None and best.video.path == "2023/walk.mp4"
    assert engine.video(walk_id).path == "2023/walk.mp4"
    assert engine.video_file(walk_id) == media / "2023" / "walk.mp4"


def test_a_smaller_copy_finds_the_same_moment(engine: Engine, tmp_path: Path) -> None:
    root = tmp_path / "copies"
    shapes_video(root / "walk.mp4", WALK, 24)
    shapes_video(root / "walk_small.mp4", WALK, 24, size=(64, 64))
    assert engine.ingest(root).videos == 2
    moments = engine.search_text("蓝色的正方形", 10, filters=Filters.parse(media="video"))
    best = {}
    for result in moments:
        assert result.video is not None
        best.setdefault(result.video.path, result.video)
    assert set(best) == {"walk.mp4", "walk_small.mp4"}
    assert all(m.start < 16 and m.end > 8 for m in best.values())


def test_taken_is_the_container_creation_time_else_the_file_time(engine: Engine, media: Path) -> None:
    os.utime(media / "videos" / "park.mov", (1_600_000_000, 1_600_000_000))
    engine.ingest(media)
    walk = engine.video(video_id_of(engine, media, "videos/walk.mp4"))
    park = engine.video(video_id_of(engine, media, "videos/park.mov"))
    assert walk.taken and park.taken
    in_2023 = engine.search_text("红色的圆形", 10, filters=Filters.parse(since="2023-05-31", until="2023-06-02"))
    assert {r.path for r in in_2023} == {"videos/walk.mp4"}
    in_2020 = engine.search_text("紫色的圆形", 10, filters=Filters.parse(since="2020-09-12", until="2020-09-14"))
    assert {r.path for r in in_2020} == {"videos/park.mov"}


def test_cli_search_json_and_media(settings: Settings, media: Path, cli_in_process: CliRun) -> None:
    code, out, err = cli_in_process(settings, "ingest", str(media), "--frame-interval", "4", "--json")
    assert code == 0, err
    assert json.loads(out)["frames"] == 6 + 5
    code, out, err = cli_in_process(settings, "search", "绿色的三角形", "--media", "video", "--json")
    assert code == 0, err
    items = json.loads(out)
    assert items and all(i["media"] == "video" and set(i["video"]) == {"path", "start", "end"} for i in items)
    assert items[0]["video"]["path"] == "videos/walk.mp4"
    code, out, err = cli_in_process(settings, "search", "绿色的三角形", "--media", "image", "--json")
    assert code == 0, err
    assert all(i["media"] == "image" and i["video"] is None for i in json.loads(out))


SUBTITLE = "我们明天去海边看日出"


def subtitled_video(path: Path) -> Path:
    """14 s of a grey street; the subtitle line is burned in from 6 s to 10 s (Noto Sans CJK)."""
    from PIL import ImageDraw

    plain = Image.new("RGB", (480, 270), (90, 110, 130))
    titled = plain.copy()
    pen = ImageDraw.Draw(titled)
    font = cjk_font(30)
    width = pen.textlength(SUBTITLE, font=font)
    pen.rectangle(((480 - width) / 2 - 8, 205, (480 + width) / 2 + 8, 250), fill=(0, 0, 0))
    pen.text(((480 - width) / 2, 210), SUBTITLE, font=font, fill=(255, 255, 255))
    frames = [(i / FPS, np.asarray(titled if 6 <= i / FPS < 10 else plain)) for i in range(14 * FPS)]
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, frames, gop=FPS)


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
def test_a_subtitle_fragment_finds_its_moment(engine: Engine, tmp_path: Path, mode: str) -> None:
    if not CJK_FONT.is_file():
        pytest.skip("no Noto CJK font to burn the subtitle in (apt-get install fonts-noto-cjk)")
    root = tmp_path / "subtitled"
    subtitled_video(root / "talk.mp4")
    shapes_video(root / "walk.mp4", WALK, 24)
    report = engine.ingest(root, ocr=True)
    assert report.bad == [] and report.videos == 2
    for query in (SUBTITLE, "去海边"):
        results = engine.search_text(query, 5, mode=mode)
        best = results[0]
        assert best.video is not None and best.video.path == "talk.mp4", query
        assert best.video.start < 10 and best.video.end > 6, query
        assert best.text is not None and "海边" in best.text
    moments = engine.search_text("去海边", 5, mode=mode, filters=Filters.parse(media="image"))
    assert all(r.video is None for r in moments)


def test_a_library_from_before_videos_says_to_migrate_then_takes_them(
        settings: Settings, torch_encoder: Encoder, media: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    current = vector_store.collection_schema

    def before_videos(dim: int) -> object:
        schema = current(dim)
        schema._fields = [f for f in schema.fields if f.name not in vector_store.VIDEO_FIELDS]
        return schema

    with monkeypatch.context() as patch:
        patch.setattr(vector_store, "collection_schema", before_videos)
        engine = Engine(settings, encoder=torch_encoder)
        report = engine.ingest(media)
        engine.close()
    assert report.added == 2
    assert sorted(b.file for b in report.bad) == ["videos/park.mov", "videos/walk.mp4"]
    name = settings.library
    assert all(str(b.reason) == f"library {name!r} was made before videos; run `searchcore migrate --library {name}` "
               "once to add the video fields, then ingest again" for b in report.bad)

    with Engine(settings, encoder=torch_encoder) as engine:
        assert engine.search_text("蓝色的正方形", 5, filters=Filters.parse(media="video")) == []
        assert len(engine.search_text("蓝色的正方形", 5, filters=Filters.parse(media="image"))) == 2
        assert engine.migrate() is True
        again = engine.ingest(media)
        assert (again.added, again.unchanged, again.videos, again.bad) == (2, 2, 2, [])
        best = engine.search_text("绿色的三角形", 1, filters=Filters.parse(media="video"))[0]
        assert best.video is not None and best.video.path == "videos/walk.mp4"


def test_a_video_cut_short_leaves_no_frame_behind(engine: Engine, tmp_path: Path) -> None:
    root = tmp_path / "cut"
    whole = shapes_video(root / "whole.mp4", WALK, 24)
    faststart = tmp_path / "faststart.mp4"  # the index first, as phones and web videos have it
    write_video(faststart, [(i / FPS, np.asarray(draw(*RED_CIRCLE, random.Random(i), SIZE))) for i in range(24 * FPS)],
                gop=FPS, options={"movflags": "faststart"})
    data = faststart.read_bytes()
    (root / "cut.mp4").write_bytes(data[:len(data) * 2 // 3])
    report = engine.ingest(root)
    assert [b.file for b in report.bad] == ["cut.mp4"]
    assert "truncated" in str(report.bad[0].reason) or "corrupt" in str(report.bad[0].reason)
    library = engine.settings.library
    assert set(engine.images.ids(library)) == set(engine.vectors.ids(library)) == \
        set(frame_ids(engine, video_id_of(engine, root, whole.name)))
    assert "cut.mp4" not in engine.images.files(library, str(root.resolve()))


def test_check_and_the_mass_removal_guard_count_a_video_as_one_file(engine: Engine, media: Path) -> None:
    engine.ingest(media)
    assert engine.check().consistent
    (media / "videos" / "walk.mp4").unlink()
    assert engine.check().missing_files == [f"{media.resolve()}/videos/walk.mp4"]
    (media / "videos" / "park.mov").unlink()
    (media / "photos" / "black.jpg").unlink()
    with pytest.raises(MassRemovalError):  # 3 of 4 files
        engine.ingest(media, sync=True)
    assert engine.ingest(media, sync=True, allow_mass_removal=True).removed == 3
    library = engine.settings.library
    assert set(engine.images.ids(library)) == set(engine.vectors.ids(library))
    assert len(set(engine.images.ids(library))) == 1, "the blue picture is all that is left"


def test_more_like_this_and_search_by_image_find_moments(engine: Engine, media: Path) -> None:
    engine.ingest(media)
    by_image = engine.search_image(picture(GREEN_TRIANGLE, 5), 3)
    assert by_image[0].video is not None and by_image[0].video.path == "videos/walk.mp4"
    assert by_image[0].video.start < 24 and by_image[0].video.end > 16
    walk = [r for r in by_image if r.video is not None and r.video.path == "videos/walk.mp4"]
    assert walk[0] is by_image[0]
    blue = next(r for r in engine.search_text("蓝色的正方形", 5, filters=Filters.parse(media="image")))
    similar = engine.search_similar(blue.image_id, 5, filters=Filters.parse(media="video"))
    assert similar[0].video is not None and similar[0].video.path == "videos/walk.mp4"
    assert similar[0].video.start < 16 and similar[0].video.end > 8


def test_a_portrait_phone_video_is_stored_upright(engine: Engine, tmp_path: Path) -> None:
    root = tmp_path / "phone"
    upright = np.asarray(draw(*RED_CIRCLE, random.Random(3), (54, 96)))  # 54 wide, 96 high, as held
    sensor = np.ascontiguousarray(np.rot90(upright, k=1))  # as the sensor records it: 96 wide, 54 high
    root.mkdir()
    write_video(root / "IMG_0001.MOV", [(i / FPS, sensor) for i in range(4 * FPS)], gop=FPS, rotation=-90)
    assert engine.ingest(root).videos == 1
    video = engine.video(video_id_of(engine, root, "IMG_0001.MOV"))
    assert (video.width, video.height) == (54, 96)
    frames = engine.get_images(frame_ids(engine, video.video_id))
    assert frames and all((f.width, f.height) == (54, 96) for f in frames.values())
    thumbnail = Image.open(io.BytesIO(next(iter(frames.values())).data))
    assert thumbnail.size == (54, 96), "the stored frame is upright"


INGEST_IN_A_FRESH_PROCESS = """
import json, re, sys
from pathlib import Path
from searchcore.engine import Engine
from tests.support import tiny_settings

def peak_mb():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read())[1]) / 1024

work, cache, warm, folder = (Path(a) for a in sys.argv[1:5])
with Engine(tiny_settings(work, cache, backend="torch", precision="fp32")) as engine:
    engine.ingest(warm)  # the model, the stores and the pipeline's threads, before the measurement
    before = peak_mb()
    report = engine.ingest(folder)
    print(json.dumps({"report": report.to_json(), "growth_mb": peak_mb() - before}))
"""


@pytest.mark.slow
def test_an_hour_of_video_is_ingested_in_bounded_memory(tmp_path: Path, model_cache: Path) -> None:
    warm = tmp_path / "warm"
    shapes_video(warm / "short.mp4", WALK, 4)
    folder = tmp_path / "long"
    folder.mkdir()
    long_video(folder / "hour.mp4", 1, 10, size=(640, 360))
    run = subprocess.run([sys.executable, "-c", INGEST_IN_A_FRESH_PROCESS, str(tmp_path / "work"), str(model_cache),
                          str(warm), str(folder)], capture_output=True, text=True, timeout=900,
                         cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert (result["report"]["videos"], result["report"]["frames"], result["report"]["bad"]) == (1, 1800, [])
    # Held at once, its 1,800 sampled frames (448x252 RGB) would take 610 MB.
    assert result["growth_mb"] < 200, result["growth_mb"]


def test_a_watched_folder_takes_a_new_video_and_lets_a_deleted_one_go(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "watched"
    write(folder / "blue.jpg", picture(BLUE_SQUARE, 2))
    library = engine.settings.library
    watcher = FolderWatcher(engine, folder, library, debounce=0.3)
    try:
        watcher.start()
        wait_until(lambda: len(set(engine.images.ids(library))) == 1, "the first re-scan", timeout=60)
        made = shapes_video(tmp_path / "walk.mp4", WALK, 24)
        made.rename(folder / "walk.mp4")  # arrives whole, as a finished copy does
        wait_until(lambda: engine.images.has_videos(library), "the new video to be ingested", timeout=120)
        walk_id = video_id_of(engine, folder, "walk.mp4")
        assert len(frame_ids(engine, walk_id)) == 12
        (folder / "walk.mp4").unlink()
        wait_until(lambda: not engine.images.has_videos(library), "the deleted video to leave", timeout=120)
        ids = set(engine.images.ids(library))
        assert len(ids) == 1 and set(engine.vectors.ids(library)) == ids, "every frame left both stores"
    finally:
        watcher.stop()
