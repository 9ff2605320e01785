"""Near-duplicate images in a library: resized, recompressed or lightly cropped copies of one picture.

Exact, not approximate: every pair of stored vectors is scored, a tile of the upper triangle of the
similarity matrix at a time (float32 matrix products), so beyond the vectors themselves memory stays at
one tile however large the library; the time grows with the square of the library's size. Two images
are linked when their cosine is at least the threshold; a group is a connected set of linked images
(single linkage), found with a union-find as the tiles are scanned.

Videos are compared as whole sequences of sampled frames, never frame by frame, so two videos that only
share an opening (or a title card, or a still scene) are not copies. Two videos are copies when their
durations differ by at most one sampling interval and at least 90% of the shorter one's frames align, in
time order, with frames of the other at about the same time (within 1.25 intervals, so sampling jitter,
another frame rate or a trimmed second still align) scoring at least the threshold: re-encoded, resized
and recompressed copies do. Video frames are never paired with pictures, nor with frames of their own
video: a picture that is a still of a video is a different kind of thing, not a copy of it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from searchcore.config import DUPLICATE_THRESHOLD, validate_library
from searchcore.errors import LibraryError, QueryError

if TYPE_CHECKING:
    from searchcore.stores.factory import Stores
    from searchcore.stores.image_db import ImageDb
    from searchcore.stores.vectors import VectorStore

log = logging.getLogger(__name__)

BLOCK = 2048  # rows and columns of one tile: 16 MB of float32 scores, large enough for BLAS to run at full speed
FETCH_IDS = 4096  # ids per request for stored vectors
VIDEO_COVERAGE = 0.9  # share of the shorter video's sampled frames that must align with the other's
TIME_TOLERANCE = 1.25  # sampling intervals between two frames' times that may still align
ALIGN_CELLS = 1 << 20  # frame pairs scored at once when aligning two long videos


@dataclass(frozen=True)
class VideoCopy:
    """One video of a group of copies."""

    video_id: int
    path: str
    duration: float  # seconds

    def to_json(self) -> dict[str, Any]:
        """The CLI's --json shape."""
        return {"video_id": self.video_id, "path": self.path, "duration": round(self.duration, 3)}


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that look the same, ids ascending; or videos that are copies of one video.

    min_score is the lowest cosine between any two images of the group (not only between linked ones).
    Every image is linked to another at the threshold or above, but through a chain (A like B, B like C)
    two images of a group can score lower than the threshold; min_score shows when that happened.

    A group of videos lists them in `videos` (ids ascending), and in `images` the id of each one's first
    sampled frame (its thumbnail), in the same order; its min_score is the lowest, over its linked pairs
    of videos, of the mean cosine of their aligned frames.
    """

    images: list[int]
    min_score: float
    videos: list[VideoCopy] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The CLI's --json shape: {"images", "min_score"}, and "videos" for a group of videos."""
        out: dict[str, Any] = {"images": list(self.images), "min_score": round(self.min_score, 6)}
        if self.videos:
            out["videos"] = [video.to_json() for video in self.videos]
        return out


@dataclass(frozen=True)
class FrameSequence:
    """A video as the duplicate finder compares it: its sampled frames' times and vectors, in time order."""

    video_id: int
    times: np.ndarray  # seconds from the start, ascending, shape (n,)
    vectors: np.ndarray  # shape (n, dim): row k is the frame at times[k]
    duration: float  # seconds (0 when unknown: the last frame's time stands in)
    interval: float  # the sampling interval the video was ingested with, seconds
    path: str = ""
    frame_ids: tuple[int, ...] = ()  # the frames' image ids, in the same order

    @property
    def length(self) -> float:
        """The duration, or the last frame's time where the container gave none."""
        return max(self.duration, float(self.times[-1]) if len(self.times) else 0.0)


def parse_threshold(value: Any) -> float:
    """A cosine threshold greater than 0 and at most 1, or a QueryError saying what is wrong."""
    if isinstance(value, bool):
        raise QueryError("threshold_invalid", value=value)
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        raise QueryError("threshold_invalid", value=value) from None
    if not (math.isfinite(threshold) and 0 < threshold <= 1):
        raise QueryError("threshold_invalid", value=value)
    return threshold


def find_duplicates(stores: Stores, library: str, threshold: Any = DUPLICATE_THRESHOLD, *,
                    progress: Callable[[int, int], None] | None = None) -> list[DuplicateGroup]:
    """Groups of near-identical images, and of videos that are copies of each other, in a library (cosine of
    stored vectors >= threshold), largest first, then the closest first. A threshold that is not in (0, 1]
    raises a QueryError, a library that does not exist a LibraryError. progress(done, total) is called as
    the scan goes, in pairs (of pictures, and of videos of about the same length)."""
    threshold = parse_threshold(threshold)
    name = validate_library(library)
    meta = stores.vectors.meta(name)
    if meta is None:
        raise LibraryError("library_missing", library=name)
    ids, vectors = _load_vectors(stores.vectors, name, meta.dim)
    videos, pictures = _frame_sequences(stores.images, name, ids, vectors)
    log.info("library %s: comparing %d pictures and %d videos at threshold %g", name, len(pictures), len(videos),
             threshold)
    picture_pairs = len(pictures) * (len(pictures) - 1) // 2
    video_pairs = 0

    def videos_done(done: int, total: int) -> None:
        nonlocal video_pairs
        video_pairs = total
        if progress is not None:
            progress(done, total + picture_pairs)

    def pictures_done(done: int, total: int) -> None:
        if progress is not None:
            progress(video_pairs + done, video_pairs + total)

    groups = video_duplicate_groups(videos, threshold, progress=videos_done)
    groups += duplicate_groups([ids[row] for row in pictures], vectors[pictures], threshold, progress=pictures_done)
    groups.sort(key=lambda g: (-len(g.images), -g.min_score, g.images[0] if g.images else 0))
    return groups


def duplicate_groups(ids: Sequence[int], vectors: np.ndarray, threshold: float = DUPLICATE_THRESHOLD, *,
                     block: int = BLOCK, progress: Callable[[int, int], None] | None = None) -> list[DuplicateGroup]:
    """Groups among these vectors (row i belongs to ids[i]); the exact scan behind find_duplicates."""
    threshold = parse_threshold(threshold)
    matrix = _normalised(vectors)
    n = len(matrix)
    if len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} vectors")
    parent = np.arange(n, dtype=np.int64)
    total, done = n * (n - 1) // 2, 0
    for start in range(0, n, block):
        rows = matrix[start:start + block]
        for first in range(start, n, block):
            a, b = np.nonzero(rows @ matrix[first:first + block].T >= threshold)
            if first == start:  # a tile on the diagonal: each pair once, never an image with itself
                a, b = a[a < b], b[a < b]
            if len(a):
                _union(parent, a + start, b + first)
        done += sum(n - row - 1 for row in range(start, start + len(rows)))
        if progress is not None:
            progress(done, total)
    roots = _roots(parent)
    order = np.argsort(roots, kind="stable")
    bounds = np.flatnonzero(np.diff(roots[order])) + 1
    groups = []
    for members in np.split(order, bounds):
        if len(members) > 1:
            groups.append(DuplicateGroup(sorted(int(ids[i]) for i in members),
                                         _lowest_score(matrix[members], block)))
    groups.sort(key=lambda g: (-len(g.images), -g.min_score, g.images[0]))
    return groups


def video_duplicate_groups(videos: Sequence[FrameSequence], threshold: float = DUPLICATE_THRESHOLD, *,
                           progress: Callable[[int, int], None] | None = None) -> list[DuplicateGroup]:
    """Groups of videos that are copies of each other (see the module's docstring), largest first.

    Only videos whose durations differ by at most one interval are compared, so the time grows with the
    pairs of videos of about the same length, not with the square of the library. progress(done, total)
    counts those pairs.
    """
    threshold = parse_threshold(threshold)
    ordered = sorted((replace(v, vectors=_normalised(v.vectors)) for v in videos if len(v.times)),
                     key=lambda v: v.length)
    lengths = np.array([v.length for v in ordered])
    widest = max((v.interval for v in ordered), default=0.0)
    # Video i is compared with the longer ones up to ends[i] (exclusive): those at most `widest` longer.
    ends = np.searchsorted(lengths, lengths + widest, side="right")
    total, done = int(sum(int(end) - i - 1 for i, end in enumerate(ends))), 0
    parent = list(range(len(ordered)))
    linked: list[tuple[int, int, float]] = []

    def advance(pairs: int) -> None:
        nonlocal done
        done += pairs
        if progress is not None and pairs:
            progress(done, total)

    for i, j in _screened_pairs(ordered, ends, threshold, advance):
        score = same_video(ordered[i], ordered[j], threshold)
        if score is not None:
            linked.append((i, j, score))
            parent[_find(parent, i)] = _find(parent, j)
    members: dict[int, list[int]] = {}
    lowest: dict[int, float] = {}
    for i, _, score in linked:
        root = _find(parent, i)
        lowest[root] = min(lowest.get(root, 1.0), score)
    for i in range(len(ordered)):
        if _find(parent, i) in lowest:
            members.setdefault(_find(parent, i), []).append(i)
    groups = []
    for root, rows in members.items():
        group = sorted((ordered[i] for i in rows), key=lambda v: v.video_id)
        groups.append(DuplicateGroup([v.frame_ids[0] for v in group if v.frame_ids], lowest[root],
                                     [VideoCopy(v.video_id, v.path, v.length) for v in group]))
    groups.sort(key=lambda g: (-len(g.videos), -g.min_score, g.videos[0].video_id))
    return groups


def _runs(sizes: np.ndarray, start: int, end: int, frames: int) -> Iterator[range]:
    """Videos start..end-1 in runs of consecutive ones with at most `frames` frames in all (at least one each)."""
    while start < end:
        stop, held = start + 1, int(sizes[start])
        while stop < end and held + sizes[stop] <= frames:
            held += int(sizes[stop])
            stop += 1
        yield range(start, stop)
        start = stop


def _screened_pairs(videos: list[FrameSequence], ends: np.ndarray, threshold: float,
                    advance: Callable[[int], None]) -> Iterator[tuple[int, int]]:
    """The pairs (i, j), i < j < ends[i], in which enough frames of each video have a partner in the other
    (at about the same time, at the threshold, in any order) for them to be copies; aligned after.

    Frames of videos sorted by length are scored a tile at a time, like the pictures, and only the tiles near
    the diagonal, where the lengths are close. advance(pairs) is told the pairs screened as it goes.
    """
    if not videos:
        return
    sizes = np.array([len(v.times) for v in videos])
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    frames = np.concatenate([v.vectors for v in videos]).astype(np.float32, copy=False)
    times = np.concatenate([v.times for v in videos]).astype(np.float32)
    slack = np.repeat(np.array([TIME_TOLERANCE * v.interval for v in videos], dtype=np.float32), sizes)
    for rows in _runs(sizes, 0, len(videos), BLOCK):
        for columns in _runs(sizes, rows.start + 1, int(ends[rows.stop - 1]), BLOCK):
            r0, r1, c0, c1 = (int(offsets[k]) for k in (rows.start, rows.stop, columns.start, columns.stop))
            if (r1 - r0) * (c1 - c0) > 4 * BLOCK * BLOCK:  # long videos: aligned without a screen, in parts
                for i in rows:
                    others = range(max(i + 1, columns.start), min(int(ends[i]), columns.stop))
                    yield from ((i, j) for j in others)
                    advance(len(others))
                continue
            pairs = (frames[r0:r1] @ frames[c0:c1].T >= threshold) & (
                np.abs(times[r0:r1, None] - times[c0:c1]) <= np.maximum(slack[r0:r1, None], slack[c0:c1]))
            for i in rows:
                first, last = max(i + 1, columns.start), min(int(ends[i]), columns.stop)
                if first >= last:
                    continue
                block = pairs[offsets[i] - r0:offsets[i + 1] - r0, offsets[first] - c0:offsets[last] - c0]
                starts = offsets[first:last] - offsets[first]
                partnered = np.logical_or.reduceat(block, starts, axis=1).sum(axis=0)  # i's frames, per video
                partners = np.add.reduceat(block.any(axis=0), starts)  # each video's frames with one in i
                needed = np.ceil(VIDEO_COVERAGE * np.minimum(sizes[i], sizes[first:last]) - 1e-9)
                yield from ((i, first + int(j)) for j in np.flatnonzero((partnered >= needed) & (partners >= needed)))
                advance(last - first)


def same_video(a: FrameSequence, b: FrameSequence, threshold: float = DUPLICATE_THRESHOLD,
               coverage: float = VIDEO_COVERAGE) -> float | None:
    """The mean cosine of two videos' aligned frames when one is a copy of the other, else None.

    A copy lasts as long as the original give or take one sampling interval, and at least `coverage` of the
    shorter one's frames align with the other's (align_frames).
    """
    if not len(a.times) or not len(b.times) or abs(a.length - b.length) > max(a.interval, b.interval):
        return None
    needed = math.ceil(coverage * min(len(a.times), len(b.times)) - 1e-9)  # as the screen counts
    matched, score = align_frames(a, b, threshold, at_least=needed)
    return score if matched >= needed else None


def align_frames(a: FrameSequence, b: FrameSequence, threshold: float = DUPLICATE_THRESHOLD,
                 at_least: int = 0) -> tuple[int, float]:
    """The most frames of a and b that pair one to one in time order, and the mean cosine of those pairs.

    Two frames may pair when their cosine is at least the threshold and their times are at most 1.25 of the
    wider sampling interval apart. Among the alignments with the most pairs, the one with the highest total
    cosine is taken: a longest common subsequence over the frames, a row of the dynamic programme at a time.
    When fewer than at_least frames of either video could pair at all, (0, 0.0) comes back at once.
    """
    na, nb = len(a.times), len(b.times)
    if not na or not nb:
        return 0, 0.0
    tolerance = TIME_TOLERANCE * max(a.interval, b.interval)
    # Each pair is worth 1 + weight x cosine: the count decides first, the cosines only break its ties, and
    # the count is the integer part of the total since weight x (sum of cosines) < 1.
    weight = 1.0 / (min(na, nb) + 1)
    first, second = _normalised(a.vectors), _normalised(b.vectors)
    times_b = np.asarray(b.times, dtype=np.float64)
    best = np.zeros(nb + 1)  # best[j]: the best total over a's rows so far and b's first j frames
    step = max(1, ALIGN_CELLS // nb)
    for start in range(0, na, step):
        scores = (first[start:start + step] @ second.T).astype(np.float64)
        near = np.abs(np.asarray(a.times[start:start + step], dtype=np.float64)[:, None] - times_b) <= tolerance
        pairs = near & (scores >= threshold)
        if step >= na and min(int(pairs.any(axis=1).sum()), int(pairs.any(axis=0).sum())) < max(at_least, 1):
            return 0, 0.0
        gains = np.where(pairs, 1.0 + weight * scores, -np.inf)
        for gain in gains:
            row = np.empty(nb + 1)
            row[0] = 0.0
            np.maximum(best[1:], best[:-1] + gain, out=row[1:])
            best = np.maximum.accumulate(row)
    matched = math.floor(best[-1] + 1e-9)
    return matched, ((best[-1] - matched) / weight / matched if matched else 0.0)


def _find(parent: list[int], item: int) -> int:
    """The root of item's set, halving the path on the way."""
    while parent[item] != item:
        parent[item] = parent[parent[item]]
        item = parent[item]
    return item


def _load_vectors(store: VectorStore, library: str, dim: int) -> tuple[list[int], np.ndarray]:
    """Every id with a vector and the vectors as one float32 matrix, fetched a chunk at a time."""
    ids = list(store.ids(library))
    matrix = np.empty((len(ids), dim), dtype=np.float32)
    found: list[int] = []
    for start in range(0, len(ids), FETCH_IDS):
        chunk = ids[start:start + FETCH_IDS]
        stored = store.vectors(library, chunk)
        for image_id in chunk:
            if image_id in stored:  # one deleted since the listing is left out
                matrix[len(found)] = stored[image_id]
                found.append(image_id)
    return found, matrix[:len(found)]


def _frame_sequences(images: ImageDb, library: str, ids: list[int], vectors: np.ndarray
                     ) -> tuple[list[FrameSequence], list[int]]:
    """The library's videos as frame sequences, and the rows of `vectors` that are pictures."""
    if not images.has_videos(library):
        return [], list(range(len(ids)))
    owners: dict[int, int] = {}  # frame id -> its video
    for start in range(0, len(ids), FETCH_IDS):
        for image_id, meta in images.get_meta_many(library, ids[start:start + FETCH_IDS]).items():
            if meta.video_id:
                owners[image_id] = meta.video_id
    row_of = {image_id: row for row, image_id in enumerate(ids)}
    video_ids = sorted(set(owners.values()))
    stored = images.get_videos(library, video_ids)
    sequences = []
    for video_id, frames in images.video_frames(library, video_ids).items():
        if video_id not in stored:
            continue
        kept = [(frame_id, time) for frame_id, time in frames if frame_id in row_of]  # frames with a vector
        video = stored[video_id]
        sequences.append(FrameSequence(video_id, np.array([time for _, time in kept]),
                                       vectors[[row_of[frame_id] for frame_id, _ in kept]], video.duration,
                                       video.frame_interval, video.path, tuple(frame_id for frame_id, _ in kept)))
    return sequences, [row for row, image_id in enumerate(ids) if image_id not in owners]


def _normalised(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length as float32, so inner products are cosines (a zero row stays zero)."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"vectors must be a 2-d array, got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, np.float32(1e-12))


def _roots(parent: np.ndarray) -> np.ndarray:
    """Point every entry at its root (pointer jumping) and return the roots."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent[:] = grand


def _union(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Join the sets of each pair (a[k], b[k]); every root points at a lower index, so no cycle can form."""
    while len(a):
        roots = _roots(parent)
        ra, rb = roots[a], roots[b]
        apart = ra != rb
        a, b, ra, rb = a[apart], b[apart], ra[apart], rb[apart]
        # Where one root is given several new parents, one write wins; the loop joins the rest next time.
        parent[np.maximum(ra, rb)] = np.minimum(ra, rb)


def _lowest_score(group: np.ndarray, block: int) -> float:
    """The lowest cosine between two different rows of a group, a tile at a time."""
    lowest = np.inf
    for start in range(0, len(group), block):
        rows = group[start:start + block]
        for first in range(start, len(group), block):
            scores = rows @ group[first:first + block].T
            if first == start:  # a square tile on the diagonal: skip each row's score with itself
                np.fill_diagonal(scores, np.inf)
            lowest = min(lowest, float(scores.min()))
    return lowest
