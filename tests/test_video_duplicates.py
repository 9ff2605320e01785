"""Duplicate videos (issue 20): copies of a video pair by their frame sequences; a shared opening does not.

The first tests compare synthetic sequences: each "scene" is a random unit vector held for a few samples,
and a copy is the same scenes with a little noise on every frame (cosine ~0.99, as a re-encode scores),
sampled at slightly different times. The last ones ingest real videos written here with PyAV.
"""

from __future__ import annotations

import numpy as np
import pytest

from searchcore.duplicates import FrameSequence, align_frames, same_video, video_duplicate_groups

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
