"""Near-duplicate images in a library: resized, recompressed or lightly cropped copies of one picture.

Exact, not approximate: every pair of stored vectors is scored, a tile of the upper triangle of the
similarity matrix at a time (float32 matrix products), so beyond the vectors themselves memory stays at
one tile however large the library; the time grows with the square of the library's size. Two images
are linked when their cosine is at least the threshold; a group is a connected set of linked images
(single linkage), found with a union-find as the tiles are scanned.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from searchcore.config import validate_library
from searchcore.errors import LibraryError, QueryError

if TYPE_CHECKING:  # engine.py may come to import this module
    from searchcore.engine import Engine

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.95
BLOCK = 2048  # rows and columns of one tile: 16 MB of float32 scores, large enough for BLAS to run at full speed
FETCH_IDS = 4096  # ids per request for stored vectors


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that look the same, ids ascending.

    min_score is the lowest cosine between any two images of the group (not only between linked ones).
    Every image is linked to another at the threshold or above, but through a chain (A like B, B like C)
    two images of a group can score lower than the threshold; min_score shows when that happened.
    """

    images: list[int]
    min_score: float

    def to_json(self) -> dict[str, Any]:
        """The CLI's --json shape."""
        return {"images": list(self.images), "min_score": round(self.min_score, 6)}


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


def find_duplicates(engine: Engine, library: str | None = None, threshold: Any = DEFAULT_THRESHOLD, *,
                    progress: Callable[[int, int], None] | None = None) -> list[DuplicateGroup]:
    """Groups of near-identical images in a library (cosine of stored vectors >= threshold), largest
    first, then the closest first. A threshold that is not in (0, 1] raises a QueryError, a library
    that does not exist a LibraryError. progress(done, total) is called as the scan goes, in pairs."""
    threshold = parse_threshold(threshold)
    name = validate_library(library or engine.settings.library)
    meta = engine.library_meta(name)
    if meta is None:
        raise LibraryError("library_missing", library=name)
    ids, vectors = _load_vectors(engine, name, meta.dim)
    log.info("library %s: comparing %d vectors at threshold %g", name, len(ids), threshold)
    return duplicate_groups(ids, vectors, threshold, progress=progress)


def duplicate_groups(ids: Sequence[int], vectors: np.ndarray, threshold: float = DEFAULT_THRESHOLD, *,
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


def _load_vectors(engine: Engine, library: str, dim: int) -> tuple[list[int], np.ndarray]:
    """Every id with a vector and the vectors as one float32 matrix, fetched a chunk at a time."""
    ids = engine.vector_ids(library)
    matrix = np.empty((len(ids), dim), dtype=np.float32)
    found: list[int] = []
    for start in range(0, len(ids), FETCH_IDS):
        chunk = ids[start:start + FETCH_IDS]
        stored = engine.stored_vectors(library, chunk)
        for image_id in chunk:
            if image_id in stored:  # one deleted since the listing is left out
                matrix[len(found)] = stored[image_id]
                found.append(image_id)
    return found, matrix[:len(found)]


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
