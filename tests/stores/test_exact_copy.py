"""On Milvus Lite, searches answered from the exact in-process copy are Milvus Lite's own FLAT results.

Each comparison runs every query of a set (50 fresh vectors and every stored vector) through the store,
which answers from its copy, and through a second store on the same file with the copy turned off,
which asks Milvus Lite.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from searchcore.engine import Engine
from searchcore.errors import LibraryError
from searchcore.stores.exact_copy import SCORE_TOLERANCE
from searchcore.stores.filters import Filters
from searchcore.stores.images import StoredImage
from searchcore.stores.vectors import Hit, MilvusVectorStore
from tests.support import tiny_settings

DIM = 48
LIB = "copy"


def unit(rows: int, seed: int, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@contextlib.contextmanager
def lite_only(uri: str) -> Iterator[MilvusVectorStore]:
    """A second store on the same Lite file that always asks Milvus (its exact copy off)."""
    lite = MilvusVectorStore(uri, exact_copy=False)
    try:
        yield lite
    finally:
        lite.close()


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[MilvusVectorStore, MilvusVectorStore]]:
    """The store with its exact copy, and one on the same Lite file that always asks Milvus."""
    uri = str(tmp_path / "milvus.db")
    store, lite = MilvusVectorStore(uri), MilvusVectorStore(uri, exact_copy=False)
    yield store, lite
    lite.close()
    store.close()


def fill(store: MilvusVectorStore, ids: list[int], vectors: np.ndarray, batch: int = 100) -> None:
    """Upsert in batches, flushing some, so Lite holds several segments and an unflushed memtable."""
    for n, start in enumerate(range(0, len(ids), batch)):
        store.upsert(LIB, ids[start:start + batch], vectors[start:start + batch])
        if n % 2 == 0:
            store.flush(LIB)


def assert_same_as_lite(store: MilvusVectorStore, lite: MilvusVectorStore, stored: dict[int, np.ndarray],
                        seed: int = 7) -> None:
    """Every query at top-10 (and the fresh ones at k=1, one at a time, and over the whole library): the same ids
    in the same order with the same scores."""
    assert store.copy_status(LIB) == "ready"
    fresh = unit(50, seed)
    queries = np.concatenate([fresh, np.stack(list(stored.values()))])
    assert_same_hits(store.search(LIB, queries, 10), lite.search(LIB, queries, 10), 10)
    for k in (1, len(stored) + 5):
        assert_same_hits(store.search(LIB, fresh, k), lite.search(LIB, fresh, k), k)
    for query in fresh:
        assert_same_hits(store.search(LIB, query[None, :], 10), lite.search(LIB, query[None, :], 10), 10)


def assert_same_hits(copy: list[list[Hit]], milvus: list[list[Hit]], k: int) -> None:
    """The same scores, and the same ids in the same order, except among near-tied hits.

    Scores agree within SCORE_TOLERANCE, and hits whose scores lie within it of each other may come in any
    order (see ExactCopy): a run of Lite's hits, each within SCORE_TOLERANCE of the one before, must hold the
    same ids in any order, and a run that the k-th hit cuts may hold other ids of about that score. Any other
    pair in the other order fails.
    """
    assert len(copy) == len(milvus)
    for mine, theirs in zip(copy, milvus):
        assert [h.score for h in mine] == pytest.approx([h.score for h in theirs], abs=SCORE_TOLERANCE)
        start = 0
        while start < len(theirs):
            end = start + 1
            while end < len(theirs) and theirs[end - 1].score - theirs[end].score <= SCORE_TOLERANCE:
                end += 1
            if end < len(theirs) or len(theirs) < k:
                assert {h.image_id for h in mine[start:end]} == {h.image_id for h in theirs[start:end]}
                if end - start == 1:
                    assert mine[start].image_id == theirs[start].image_id
            start = end



def test_the_comparison_forgives_near_ties_only(stores: tuple[MilvusVectorStore, MilvusVectorStore]) -> None:
    """A copy that swapped two hits of a real ranking whose scores differ by more than the tolerance fails
    assert_same_hits; the same swap within the tolerance passes."""
    store, lite = stores
    store.open_library(LIB, "tiny", DIM, create=True)
    fill(store, list(range(300)), unit(300, 17))
    ranking = lite.search(LIB, unit(1, 18), 300)[0]
    assert_same_hits([ranking], [ranking], 300)
    gap = next(i for i in range(len(ranking) - 1) if ranking[i].score - ranking[i + 1].score > 1e-4)
    first, second = ranking[gap], ranking[gap + 1]
    swapped = [*ranking[:gap], second, first, *ranking[gap + 2:]]
    with pytest.raises(AssertionError):
        assert_same_hits([swapped], [ranking], 300)
    ids_swapped = [*ranking[:gap], Hit(second.image_id, first.score), Hit(first.image_id, second.score),
                   *ranking[gap + 2:]]
    with pytest.raises(AssertionError):  # the scores in place, the ids in the wrong order
        assert_same_hits([ids_swapped], [ranking], 300)

    near = SCORE_TOLERANCE / 2  # the same two hits, near-tied: either order is Lite's
    tied = [*ranking[:gap], first, Hit(second.image_id, first.score - near), *ranking[gap + 2:]]
    tied_swapped = [*ranking[:gap], Hit(second.image_id, first.score - near), first, *ranking[gap + 2:]]
    assert_same_hits([tied_swapped], [tied], 300)

def test_copy_matches_lite_after_inserts_upserts_and_deletes(
        stores: tuple[MilvusVectorStore, MilvusVectorStore]) -> None:
    store, lite = stores
    store.open_library(LIB, "tiny", DIM, create=True)
    ids = list(range(1000, 1300))
    stored = dict(zip(ids, unit(300, 1)))
    fill(store, ids, np.stack(list(stored.values())))
    assert_same_as_lite(store, lite, stored)

    changed = ids[::6] + list(range(5000, 5020))  # 50 existing ids get new vectors, 20 ids are new
    vectors = unit(len(changed), 2)
    store.upsert(LIB, changed, vectors)
    stored.update(zip(changed, vectors))
    assert_same_as_lite(store, lite, stored, seed=8)

    gone = ids[1::7] + [5003, 999_999]  # one id that never existed
    store.delete(LIB, gone)
    for image_id in gone:
        stored.pop(image_id, None)
    store.flush(LIB)
    assert_same_as_lite(store, lite, stored, seed=9)
    assert store.check_copy(LIB) is None


def test_copy_matches_lite_after_dropping_and_recreating_a_library(
        stores: tuple[MilvusVectorStore, MilvusVectorStore]) -> None:
    store, lite = stores
    store.open_library(LIB, "tiny", DIM, create=True)
    fill(store, list(range(200)), unit(200, 3))
    store.drop(LIB)
    assert store.copy_status(LIB) == "absent"
    with pytest.raises(LibraryError):
        store.search(LIB, unit(1, 4), 10)

    store.open_library(LIB, "tiny", DIM, create=True)
    assert store.search(LIB, unit(1, 4), 10) == [[]]
    ids = list(range(100, 250))  # overlaps the dropped library's ids with other vectors
    stored = dict(zip(ids, unit(150, 5)))
    fill(store, ids, np.stack(list(stored.values())))
    assert_same_as_lite(store, lite, stored)


def test_first_search_before_the_copy_is_ready_answers_from_milvus(tmp_path: Path) -> None:
    uri = str(tmp_path / "milvus.db")
    writer = MilvusVectorStore(uri)
    writer.open_library(LIB, "tiny", DIM, create=True)
    ids = list(range(1500))
    stored = dict(zip(ids, unit(1500, 6)))
    fill(writer, ids, np.stack(list(stored.values())), batch=500)
    writer.close()  # the process forgets the copy; a reopened store loads it again

    store = MilvusVectorStore(uri)
    try:
        query = unit(1, 10)
        assert store.copy_status(LIB) == "absent"
        first = store.search(LIB, query, 10)  # starts the load; Milvus answers
        with lite_only(uri) as lite:
            assert_same_hits(first, lite.search(LIB, query, 10), 10)
            assert store.wait_for_copy(LIB, timeout=120)
            assert_same_as_lite(store, lite, stored)
    finally:
        store.close()


def test_writes_while_the_copy_loads_reach_it(tmp_path: Path) -> None:
    uri = str(tmp_path / "milvus.db")
    writer = MilvusVectorStore(uri)
    writer.open_library(LIB, "tiny", DIM, create=True)
    stored = dict(zip(range(3000), unit(3000, 11)))
    fill(writer, list(stored), np.stack(list(stored.values())), batch=1000)
    writer.close()

    store = MilvusVectorStore(uri)
    lite = MilvusVectorStore(uri, exact_copy=False)
    try:
        store.open_library(LIB, "tiny", DIM, create=True)  # an ingest opens the library: the load starts
        changed = list(range(0, 3000, 10)) + list(range(9000, 9100))
        vectors = unit(len(changed), 12)
        for start in range(0, len(changed), 40):
            store.upsert(LIB, changed[start:start + 40], vectors[start:start + 40])
        stored.update(zip(changed, vectors))
        gone = list(range(5, 3000, 25))
        store.delete(LIB, gone)
        for image_id in gone:
            del stored[image_id]
        assert store.wait_for_copy(LIB, timeout=120)
        assert store.check_copy(LIB) is None
        assert_same_as_lite(store, lite, stored)
    finally:
        lite.close()
        store.close()


def test_exact_ties_hold_the_same_ids_and_go_to_the_older_write(
        stores: tuple[MilvusVectorStore, MilvusVectorStore]) -> None:
    store, lite = stores
    store.open_library(LIB, "tiny", 8, create=True)
    rng = np.random.default_rng(16)
    small = rng.integers(-2, 3, (400, 8)).astype(np.float32)  # integer products: ties everywhere
    small[5] = 5  # scores 200 against itself, at most 80 against any other row
    fill(store, list(range(400)), small)
    twin = small[5]
    store.upsert(LIB, [900], twin[None, :])  # a duplicate written later, in a later Lite segment
    store.flush(LIB)
    queries = rng.integers(-2, 3, (30, 8)).astype(np.float32)
    for k in (10, 450):
        assert_same_hits(store.search(LIB, queries, k), lite.search(LIB, queries, k), k)
    top = [h.image_id for h in store.search(LIB, twin[None, :], 2)[0]]
    assert top == [h.image_id for h in lite.search(LIB, twin[None, :], 2)[0]] == [5, 900]


@pytest.mark.parametrize("fault", ["vector changed", "row missing"])
def test_check_detects_and_reloads_a_stale_copy(tmp_path: Path, fault: str) -> None:
    settings = tiny_settings(tmp_path, tmp_path / "models", library=LIB)
    engine = Engine(settings)  # check never needs the encoder here: both stores hold the same ids
    try:
        store = engine.vectors
        assert isinstance(store, MilvusVectorStore)
        store.open_library(LIB, "tiny", DIM, create=True)
        stored = dict(zip(range(1, 121), unit(120, 13)))
        fill(store, list(stored), np.stack(list(stored.values())))
        engine.images.put_many(LIB, [StoredImage(i, b"x", "PNG", 1, 1, f"{i:064d}") for i in stored])
        assert engine.check().consistent

        # No write through the store can make the copy stale, so corrupt it behind the store's back.
        copy = store._copies.ready(LIB)  # type: ignore[union-attr]
        assert copy is not None
        if fault == "vector changed":
            copy.upsert([7], unit(1, 14))
        else:
            copy.delete([7])
        with lite_only(settings.milvus_uri) as lite:
            with pytest.raises(AssertionError):
                assert_same_as_lite(store, lite, stored)

            report = engine.check()
            assert not report.consistent and report.copy_problem is not None
            assert not report.missing_vectors and not report.orphan_vectors
            assert report.to_json()["copy_problem"] == report.copy_problem
            assert engine.check().consistent  # reloaded from Milvus
            assert_same_as_lite(store, lite, stored)
    finally:
        engine.close()


def test_copy_can_be_turned_off(tmp_path: Path) -> None:
    store = MilvusVectorStore(str(tmp_path / "milvus.db"), exact_copy=False)
    try:
        store.open_library(LIB, "tiny", DIM, create=True)
        store.upsert(LIB, [1, 2], unit(2, 15))
        assert store.copy_status(LIB) == "off"
        assert [h.image_id for h in store.search(LIB, unit(2, 15)[:1], 2)[0]] == [1, 2]
        assert store.check_copy(LIB) is None
    finally:
        store.close()


def test_filtered_searches_match_lite_whatever_share_they_keep(
        stores: tuple[MilvusVectorStore, MilvusVectorStore]) -> None:
    """A media filter keeps half the rows (every row is scored, the kept ones' scores taken); a folder keeps a
    few (only those rows are scored): both answer what Lite answers."""
    store, lite = stores
    store.open_library(LIB, "tiny", DIM, create=True)
    ids = list(range(1, 401))
    attrs = [(f"{'a' if i % 20 == 0 else 'b'}/{i}.jpg", 1_600_000_000 + i) for i in ids]
    frames = [(i % 7 + 1 if i % 2 else 0, float(i)) for i in ids]  # odd ids are frames of 7 videos
    store.upsert(LIB, ids, unit(400, 3), attrs, frames)
    store.flush(LIB)
    assert store.wait_for_copy(LIB, timeout=60)
    queries = unit(20, 4)
    for filters in (Filters.parse(media="video"), Filters.parse(media="image"), Filters.parse(folder="a")):
        found = store.search(LIB, queries, 10, filters)
        assert_same_hits(found, lite.search(LIB, queries, 10, filters), 10)
        kept = {i for i, (path, _), (video, _) in zip(ids, attrs, frames)
                if filters.mask(np.array([path], dtype=object), np.array([1]), np.array([video]))[0]}
        assert all(h.image_id in kept for hits in found for h in hits)
