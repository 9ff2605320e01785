"""Both store interfaces, each run against every real backend: SQLite and MariaDB, Milvus Lite and server."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from searchcore.errors import LibraryError
from searchcore.records import naive_seconds
from searchcore.stores.filters import Filters
from searchcore.stores.image_db import ImageDb, open_image_store
from searchcore.stores.images import StoredImage
from searchcore.stores.vectors import MilvusVectorStore
from searchcore.stores.videos import StoredVideo


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.server)])
def image_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ImageDb]:
    url = str(tmp_path / "images.db") if request.param == "sqlite" else request.getfixturevalue("mariadb_url")
    store = open_image_store(url)
    yield store
    for library in store.libraries():
        store.drop(library)
    store.close()


@pytest.fixture(params=["lite", pytest.param("server", marks=pytest.mark.server)])
def vector_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MilvusVectorStore]:
    uri = str(tmp_path / "milvus.db") if request.param == "lite" else request.getfixturevalue("milvus_server")
    store = MilvusVectorStore(uri)
    yield store
    for meta in store.libraries():
        store.drop(meta.library)
    store.close()


def image(i: int, payload: bytes = b"x") -> StoredImage:
    return StoredImage(i, payload * 10, "PNG", 4, 3, f"{i:064d}", f"src:{i}", [f"图片{i}", "第二个说明"])


def unit(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_images_round_trip_with_captions(image_store: ImageDb) -> None:
    image_store.put_many("lib", [image(1), image(2), image(9_000_000_000_000)])
    got = image_store.get_many("lib", [1, 9_000_000_000_000, 77])
    assert set(got) == {1, 9_000_000_000_000}
    assert got[1].data == b"x" * 10 and got[1].captions == ["图片1", "第二个说明"] and got[1].width == 4
    assert image_store.hashes("lib", [2, 3]) == {2: f"{2:064d}"}


def test_storing_an_id_twice_keeps_the_first(image_store: ImageDb) -> None:
    image_store.put_many("lib", [image(1, b"a")])
    image_store.put_many("lib", [image(1, b"b"), image(2)])
    assert image_store.count("lib") == 2
    assert image_store.get_many("lib", [1])[1].data == b"a" * 10


def test_libraries_are_separate_and_drop_removes_one(image_store: ImageDb) -> None:
    image_store.put_many("one", [image(1), image(2)])
    image_store.put_many("two", [image(1)])
    assert image_store.libraries() == {"one": 2, "two": 1}
    image_store.drop("one")
    assert image_store.libraries() == {"two": 1}


def test_ids_page_through_large_libraries(image_store: ImageDb) -> None:
    image_store.put_many("big", [image(i) for i in range(1, 5012)])
    assert list(image_store.ids("big")) == list(range(1, 5012))
    image_store.delete_many("big", list(range(1, 12)))
    assert image_store.count("big") == 5000


def test_sql_in_library_names_never_reaches_the_database(image_store: ImageDb) -> None:
    with pytest.raises(LibraryError):
        image_store.put_many("a; DROP TABLE searchcore_images; --", [image(1)])
    image_store.put_many("ok", [image(1)])
    assert image_store.count("ok") == 1


def test_vectors_upsert_is_idempotent_and_search_ranks_by_cosine(vector_store: MilvusVectorStore) -> None:
    meta = vector_store.open_library("lib", "tiny@abc", 16, create=True)
    assert (meta.model, meta.dim) == ("tiny@abc", 16)
    vecs = unit(50, 16)
    ids = list(range(100, 150))
    vector_store.upsert("lib", ids, vecs)
    vector_store.upsert("lib", ids, vecs)
    vector_store.flush("lib")
    assert vector_store.count("lib") == 50
    hits = vector_store.search("lib", vecs[[7, 30]], 5)
    assert [h[0].image_id for h in hits] == [107, 130]
    assert hits[0][0].score == pytest.approx(1.0, abs=1e-4)
    exact = np.argsort(-(vecs @ vecs[7]))[:5]
    assert [h.image_id for h in hits[0]] == [ids[i] for i in exact]


def test_vectors_ids_existing_fetch_and_delete(vector_store: MilvusVectorStore) -> None:
    vector_store.open_library("lib", "m", 8, create=True)
    vecs = unit(30, 8, seed=1)
    vector_store.upsert("lib", list(range(30)), vecs)
    vector_store.flush("lib")
    assert sorted(vector_store.ids("lib")) == list(range(30))
    assert vector_store.existing("lib", [1, 2, 99]) == {1, 2}
    np.testing.assert_allclose(vector_store.vectors("lib", [3])[3], vecs[3], atol=1e-6)
    vector_store.delete("lib", [1, 2])
    assert vector_store.existing("lib", [1, 2, 3]) == {3}


def test_library_records_its_model_and_refuses_another(vector_store: MilvusVectorStore) -> None:
    vector_store.open_library("lib", "RN50", 8, create=True)
    with pytest.raises(LibraryError, match="was built with model RN50"):
        vector_store.open_library("lib", "ViT-B-16", 8, create=False)
    with pytest.raises(LibraryError, match="does not exist"):
        vector_store.open_library("other", "RN50", 8, create=False)
    assert [m.library for m in vector_store.libraries()] == ["lib"]


def test_library_metadata_survives_reopening(vector_store: MilvusVectorStore, tmp_path: Path) -> None:
    vector_store.open_library("lib", "RN50", 8, create=True)
    vector_store.upsert("lib", [5], unit(1, 8))
    vector_store.flush("lib")
    again = MilvusVectorStore(vector_store.uri)
    meta = again.meta("lib")
    assert meta is not None and (meta.model, meta.dim) == ("RN50", 8)
    assert meta.index == ("HNSW" if vector_store.server else "FLAT")
    assert again.count("lib") == 1


def test_ivf_flat_library_records_its_index_and_finds_exact_matches(tmp_path: Path) -> None:
    store = MilvusVectorStore(str(tmp_path / "ivf.db"), index="IVF_FLAT")
    try:
        meta = store.open_library("lib", "m", 16, create=True)
        assert (meta.index, meta.index_params) == ("IVF_FLAT", {"nlist": 1024})
        vecs = unit(200, 16, seed=3)
        store.upsert("lib", list(range(200)), vecs)
        store.flush("lib")
        hits = store.search("lib", vecs[[5, 150]], 3)
        assert [h[0].image_id for h in hits] == [5, 150]
    finally:
        store.close()


def test_folder_pictures_become_thumbnails_and_their_files_move_with_their_folder(image_store: ImageDb) -> None:
    from searchcore.records import FileState
    from searchcore.stores.folder_files import RecordedFile

    image_store.put_many("lib", [image(1, b"original"), image(2, b"original"), image(3, b"dataset")])
    image_store.put_files("lib", "/mnt/old", {"a/1.jpg": FileState(80, 111, 1), "2.jpg": FileState(80, 222, 2)})
    assert image_store.with_originals("lib", -1, 10) == [1, 2], "a dataset image has no file: it keeps its bytes"
    assert image_store.with_originals("lib", 1, 10) == [2]

    image_store.set_thumbnails("lib", {1: (b"small", "JPEG")})
    got = image_store.get_many("lib", [1, 2, 3])
    assert (got[1].data, got[1].format, got[1].thumbnail) == (b"small", "JPEG", True)
    assert not got[2].thumbnail and got[3].data == b"dataset" * 10
    assert image_store.with_originals("lib", -1, 10) == [2]
    image_store.compact()

    assert image_store.move_root("lib", "/mnt/old", "/media/新盘") == 2
    assert image_store.roots("lib") == {"/media/新盘": 2}
    assert image_store.recorded_files("lib", [1]) == {1: [RecordedFile("/media/新盘", "a/1.jpg", 80, 111)]}
    assert image_store.files("lib", "/mnt/old") == {}


def test_the_image_store_keeps_videos_and_their_frames(image_store: ImageDb) -> None:
    video = StoredVideo(7, "a/clip.mp4", 1234, 5678, "ab" * 32, 24.5, 1920, 1080, 1_700_000_000, 2.0)
    image_store.put_videos("lib", [video])
    frames = [StoredImage(100 + i, b"jpeg", "JPEG", 1920, 1080, f"{i:064x}", "a/clip.mp4", [], "a/clip.mp4",
                          1_700_000_000, thumbnail=True, video_id=7, time_s=t) for i, t in enumerate([4.0, 0.0, 2.0])]
    image_store.put_many("lib", [*frames, StoredImage(1, b"png", "PNG", 9, 9, "cd" * 32)])
    assert image_store.get_videos("lib", [7, 8]) == {7: video}
    assert image_store.has_videos("lib") and not image_store.has_videos("other")
    assert image_store.video_frames("lib", [7]) == {7: [(101, 0.0), (102, 2.0), (100, 4.0)]}
    meta = image_store.get_meta_many("lib", [100, 1])
    assert (meta[100].video_id, meta[100].time_s, meta[1].video_id) == (7, 4.0, 0)
    assert image_store.get_many("lib", [102])[102].time_s == 2.0
    image_store.put_videos("lib", [dataclasses.replace(video, path="b/clip.mp4")])
    assert image_store.get_videos("lib", [7])[7].path == "b/clip.mp4"
    image_store.delete_videos("lib", [7])
    assert image_store.get_videos("lib", [7]) == {} and not image_store.has_videos("lib")


def test_dated_images_are_listed_by_date_within_the_filters(image_store: ImageDb) -> None:
    """What a query of only time words lists: dated images in the range, folder and media asked, newest first."""
    day = [naive_seconds(dt.datetime(2025, m, 10)) for m in range(1, 7)]
    image_store.put_many("dates", [image(9)])  # no date: never listed
    assert not image_store.has_dates("dates")
    image_store.put_many("dates", [dataclasses.replace(image(m + 1), path=f"{'a' if m % 2 else 'b'}/{m}.png",
                                                       taken=day[m]) for m in range(6)])
    image_store.put_many("dates", [dataclasses.replace(image(20), path="a/clip.mp4", taken=day[2], video_id=5)])
    assert image_store.has_dates("dates")
    spring = Filters.parse(since="2025-02-01", until="2025-05-10")
    assert image_store.dated("dates", spring, 10) == [5, 4, 3, 20, 2]
    assert image_store.dated("dates", spring, 10, newest=False) == [2, 3, 20, 4, 5]
    assert image_store.dated("dates", spring, 2) == [5, 4]
    assert image_store.dated("dates", Filters.parse(folder="a", since="2025-02-01", media="image"), 10) == [6, 4, 2]
    assert image_store.dated("dates", Filters.parse(media="video"), 10) == [20]
    assert image_store.dated("other", Filters(), 10) == []
