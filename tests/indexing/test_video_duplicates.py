"""Duplicate videos (issue 20): copies of a video pair by their frame sequences; a shared opening does not.

The first tests compare synthetic sequences: each "scene" is a random unit vector held for a few samples,
and a copy is the same scenes with a little noise on every frame (cosine ~0.99, as a re-encode scores),
sampled at slightly different times. The last ones ingest real videos written here with PyAV.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from demo.shapes import CLASSES, draw
from searchcore.config import Settings
from searchcore.duplicates import (
    FrameSequence,
    align_frames,
    find_duplicates,
    same_video,
    video_duplicate_groups,
)
from searchcore.engine import Engine
from searchcore.models.encoder import Encoder
from searchcore.sources.datasets import folder_image_id
from searchcore.web.ui.layout import SearchApp
from tests.sources.test_videos import write_video
from tests.support import CliRun

DIM = 64
INTERVAL = 2.0


def scenes(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, DIM))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def sequence(video_id: int, shots: np.ndarray, per_shot: int = 3, *, noise: float = 0.0, offset: float = 0.0,
             jitter: float = 0.0, extra: int = 0, seed: int = 0) -> FrameSequence:
    """A video whose shots each last per_shot samples (+ `extra` samples of its last shot at the end)."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(shots, per_shot, axis=0)
    rows = np.concatenate([rows] + [rows[-1:]] * extra)
    rows = rows + noise * rng.standard_normal(rows.shape) / np.sqrt(DIM)
    times = np.arange(len(rows)) * INTERVAL + offset + rng.uniform(0, jitter, len(rows))
    return FrameSequence(video_id, times, rows.astype(np.float32), duration=len(rows) * INTERVAL + offset,
                         interval=INTERVAL, path=f"v{video_id}.mp4", frame_ids=(video_id * 100,))


ORIGINAL = scenes(8, seed=1)


def test_a_reencoded_copy_pairs_despite_noise_jitter_and_a_frame_more() -> None:
    original = sequence(1, ORIGINAL)
    copy = sequence(2, ORIGINAL, noise=0.12, jitter=0.08, extra=1, seed=3)
    matched, score = align_frames(original, copy)
    assert matched == 24  # every frame of the original, in order
    assert 0.98 < score < 1.0
    assert same_video(original, copy) == pytest.approx(score)
    assert same_video(copy, original) == pytest.approx(score)


def test_a_copy_offset_by_a_second_still_pairs() -> None:
    assert same_video(sequence(1, ORIGINAL), sequence(2, ORIGINAL, noise=0.1, offset=1.0, seed=4)) is not None


def test_a_frame_lost_at_a_cut_is_tolerated_but_not_a_tenth() -> None:
    original = sequence(1, ORIGINAL)
    copy = sequence(2, ORIGINAL, noise=0.1, seed=5)
    one_off = copy.vectors.copy()
    one_off[3] = scenes(1, seed=99)[0]  # the sample at a cut landed on the other side of it
    assert same_video(original, FrameSequence(2, copy.times, one_off, copy.duration, INTERVAL)) is not None
    three_off = one_off.copy()
    three_off[[10, 17]] = scenes(2, seed=98)  # 3 of 24 frames differ: fewer than 90% align
    assert same_video(original, FrameSequence(2, copy.times, three_off, copy.duration, INTERVAL)) is None


@pytest.mark.parametrize("shared", [1, 4, 7])
def test_videos_that_share_only_an_opening_do_not_pair(shared: int) -> None:
    original = sequence(1, ORIGINAL)
    other = np.concatenate([ORIGINAL[:shared], scenes(8 - shared, seed=7)])
    same_length = sequence(2, other, noise=0.05, seed=6)
    assert same_video(original, same_length) is None
    matched, _ = align_frames(original, same_length)
    assert matched == 3 * shared  # the opening does align: it is the rest that does not


def test_the_opening_alone_or_a_longer_cut_does_not_pair() -> None:
    original = sequence(1, ORIGINAL)
    assert same_video(original, sequence(2, ORIGINAL[:6], noise=0.05)) is None  # a 36 s trailer of a 48 s video
    assert same_video(original, sequence(3, ORIGINAL, extra=2)) is None  # 4 s longer: more than a frame or so
    assert same_video(original, sequence(4, ORIGINAL, extra=1)) is not None  # 2 s longer: a frame more


def test_frames_must_pair_in_time_order() -> None:
    original = sequence(1, ORIGINAL)
    shuffled = sequence(2, ORIGINAL[::-1])  # the same shots in the reverse order
    assert align_frames(original, shuffled)[0] <= 6
    assert same_video(original, shuffled) is None


def test_copies_form_one_group_reported_once() -> None:
    original = sequence(1, ORIGINAL)
    copies = [sequence(5, ORIGINAL, noise=0.1, seed=8), sequence(3, ORIGINAL, noise=0.2, jitter=0.1, seed=9)]
    unrelated = [sequence(7, scenes(8, seed=11)), sequence(8, np.concatenate([ORIGINAL[:4], scenes(4, seed=12)]))]
    steps: list[tuple[int, int]] = []
    [group] = video_duplicate_groups([unrelated[0], copies[0], original, unrelated[1], copies[1]],
                                     progress=lambda done, total: steps.append((done, total)))
    assert [v.video_id for v in group.videos] == [1, 3, 5]
    assert [v.path for v in group.videos] == ["v1.mp4", "v3.mp4", "v5.mp4"]
    assert group.images == [100, 300, 500]  # each video's first frame
    assert 0.95 < group.min_score < 0.999
    assert steps[-1] == (10, 10)  # five videos of one length: every pair was a candidate
    assert group.to_json()["videos"][0] == {"video_id": 1, "path": "v1.mp4", "duration": 48.0}


def test_only_videos_of_about_the_same_length_are_compared() -> None:
    steps: list[tuple[int, int]] = []
    videos = [sequence(i, scenes(i, seed=i), per_shot=1) for i in range(1, 9)]  # 2, 4, ... 16 s long
    assert video_duplicate_groups(videos, progress=lambda done, total: steps.append((done, total))) == []
    assert steps[-1] == (7, 7)  # neighbours only: the others' lengths differ by more than the 2 s interval
    assert video_duplicate_groups([]) == video_duplicate_groups(videos[:1]) == []


# Real videos, ingested with the tiny model (it tells 18 colour-shape classes apart; see test_duplicates.py)

LIBRARY = "clips"
SIZE = (192, 160)
FPS = 10


def shots(classes: list[int], ends: list[float], seed: int) -> list[tuple[float, np.ndarray]]:
    """Frames at FPS showing one drawn shape per shot; shot k shows CLASSES[classes[k]] until ends[k] seconds.

    The cuts fall between the 2 s samples, so a copy's sampling jitter cannot move a sample across one.
    """
    rng = random.Random(seed)
    pictures = [np.asarray(draw(*CLASSES[c], rng, size=SIZE)) for c in classes]
    frames = []
    for n in range(round(ends[-1] * FPS)):
        time = n / FPS
        frames.append((time, pictures[next(k for k, end in enumerate(ends) if time < end)]))
    return frames


def smaller_copy(original: Path, path: Path) -> Path:
    """The original decoded, every other frame kept (5 fps), halved in size and encoded again."""
    with av.open(str(original)) as container:
        frames = [(frame.time, frame.reformat(width=SIZE[0] // 2, height=SIZE[1] // 2, format="rgb24").to_ndarray())
                  for n, frame in enumerate(container.decode(video=0)) if n % 2 == 0]
    return write_video(path, frames)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 14 s videos (7 samples each) and two pictures.

    original.mp4: shots of classes 0, 4, 8, 12; copy.mp4: it re-encoded at half size and half the frame rate;
    opening.mp4: the same first two shots (7 s, 4 of its 7 samples), then classes 15 and 2. still.png is
    the original's first shot as a picture, still_half.png that picture at half size.
    """
    folder = tmp_path_factory.mktemp("clips")
    ends = [3.0, 7.0, 11.0, 14.0]
    original = write_video(folder / "original.mp4", shots([0, 4, 8, 12], ends, seed=1))
    smaller_copy(original, folder / "copy.mp4")
    write_video(folder / "opening.mp4", shots([0, 4, 15, 2], ends, seed=1))
    still = draw(*CLASSES[0], random.Random(1), size=SIZE)
    (folder / "still.png").write_bytes(png(still))
    (folder / "still_half.png").write_bytes(png(still.resize((SIZE[0] // 2, SIZE[1] // 2))))
    return folder


def test_a_smaller_copy_pairs_and_a_shared_opening_does_not(settings: Settings, torch_encoder: Encoder, clips: Path,
                                                            cli_in_process: CliRun) -> None:
    engine = Engine(settings, encoder=torch_encoder)
    try:
        report = engine.ingest(clips, library=LIBRARY)
        assert report.bad == []
        groups = find_duplicates(engine.stores, LIBRARY)
        frames = engine.images.video_frames(LIBRARY, [v.video_id for g in groups for v in g.videos])
        gallery, _ = SearchApp(engine).duplicates(LIBRARY, 0.95)
    finally:
        engine.close()
    pictures = {folder_image_id((clips / name).read_bytes()) for name in ("still.png", "still_half.png")}
    [videos] = [g for g in groups if g.videos]
    assert sorted(v.path for v in videos.videos) == ["copy.mp4", "original.mp4"]  # not opening.mp4
    assert [v.video_id for v in videos.videos] == sorted(v.video_id for v in videos.videos)
    assert videos.images == [frames[v.video_id][0][0] for v in videos.videos]  # each one's first frame
    assert all(len(frames[v.video_id]) == 7 for v in videos.videos)
    assert videos.min_score > 0.95
    # The picture pairs with its resized copy and with no frame, though it is the videos' first shot.
    assert [set(g.images) for g in groups if not g.videos] == [pictures]
    # The Duplicates tab names each copy by its path and length, not by a frame's id.
    video_captions = sorted(text for _, text in gallery if "▶" in text)
    assert len(video_captions) == 2 and "copy.mp4 (0:" in video_captions[0] and "original.mp4" in video_captions[1]

    code, out, err = cli_in_process(settings, "duplicates", "--library", LIBRARY, "--json")
    assert code == 0, err
    assert json.loads(out) == [g.to_json() for g in groups]
    assert sorted(v["path"] for g in json.loads(out) for v in g.get("videos", [])) == ["copy.mp4", "original.mp4"]
    code, out, err = cli_in_process(settings, "duplicates", "--library", LIBRARY)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"library {LIBRARY}: 2 groups of near-duplicates (2 images, 2 videos) at threshold 0.95"
    [video_line] = [line for line in lines if "videos" in line and line.startswith("  ")]
    assert "copy.mp4" in video_line and "original.mp4" in video_line and "opening.mp4" not in video_line
