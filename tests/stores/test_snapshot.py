"""The search snapshot beside a Lite folder: a one-question process answers from it exactly as Lite would, and
never from a snapshot the Lite folder has moved past (a write by another process, a process holding the folder,
a damaged file), when it reads Lite instead and says so."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.stores import snapshot
from searchcore.stores.exact_copy import SCORE_TOLERANCE
from searchcore.stores.factory import SnapshotFirst
from searchcore.stores.filters import Filters
from searchcore.stores.vectors import MilvusVectorStore
from tests.support import ROOT

DIM = 32
LIB = "snap"


def unit(rows: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((rows, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def settings_for(uri: str) -> Settings:
    return Settings(milvus_uri=uri, library=LIB)


@pytest.fixture
def uri(tmp_path: Path) -> str:
    """A Lite folder holding one library of 300 vectors (with folders and dates), saved by its last store."""
    path = str(tmp_path / "milvus.db")
    store = MilvusVectorStore(path)
    store.open_library(LIB, "m", DIM, create=True)
    attrs = [(f"{'a' if i % 3 else 'b'}/{i}.jpg", 1_600_000_000 + i) for i in range(300)]
    for start in range(0, 300, 100):
        store.upsert(LIB, list(range(start, start + 100)), unit(300, 1)[start:start + 100], attrs[start:start + 100])
        store.flush(LIB)
    store.close()
    assert (snapshot.folder_of(path) / f"{LIB}.snap").is_file()
    return path


def lite_search(uri: str, queries: np.ndarray, k: int, filters: Filters | None = None) -> list[list[tuple[int, float]]]:
    lite = MilvusVectorStore(uri, exact_copy=False)
    try:
        return [[(h.image_id, h.score) for h in hits] for hits in lite.search(LIB, queries, k, filters)]
    finally:
        lite.close()


def run_elsewhere(code: str) -> None:
    """Python code in another process, with searchcore importable."""
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, check=True, timeout=300,
                   env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})


def test_a_current_snapshot_answers_as_lite_without_starting_it(uri: str) -> None:
    queries = unit(20, 2)
    filters = Filters.parse("a", None, None)
    store = SnapshotFirst(settings_for(uri), LIB)
    try:
        assert store.snapshot is not None and store.count(LIB) == 300
        ours = [[(h.image_id, h.score) for h in hits] for hits in store.search(LIB, queries, 25)]
        filtered = [[(h.image_id, h.score) for h in hits] for hits in store.search(LIB, queries, 25, filters)]
        assert store.meta(LIB).dim == DIM  # type: ignore[union-attr]
        assert store.text_index() is None
        np.testing.assert_array_equal(store.vectors(LIB, [5])[5], unit(300, 1)[5])
        assert store._milvus is None  # Lite never started
    finally:
        store.close()
    for mine, theirs in ((ours, lite_search(uri, queries, 25)), (filtered, lite_search(uri, queries, 25, filters))):
        assert [[i for i, _ in hits] for hits in mine] == [[i for i, _ in hits] for hits in theirs]
        assert np.allclose([[s for _, s in h] for h in mine], [[s for _, s in h] for h in theirs],
                           atol=SCORE_TOLERANCE, rtol=0)
    assert all(i % 3 for hits in filtered for i, _ in hits)  # folder a only


def test_a_write_from_another_process_makes_the_snapshot_unused(uri: str, caplog: pytest.LogCaptureFixture) -> None:
    # another process adds a vector that matches the query best, with no exact copy, so it saves no snapshot
    run_elsewhere(f"""
        import numpy as np
        from searchcore.stores.vectors import MilvusVectorStore
        store = MilvusVectorStore({uri!r}, exact_copy=False)
        store.upsert({LIB!r}, [999], np.eye(1, {DIM}, dtype=np.float32))
        store.close()
    """)
    with caplog.at_level(logging.WARNING, logger="searchcore.stores.snapshot"):
        store = SnapshotFirst(settings_for(uri), LIB)
    try:
        assert store.snapshot is None
        assert any("out of date" in r.getMessage() for r in caplog.records)
        hits = store.search(LIB, np.eye(1, DIM, dtype=np.float32), 3)[0]
        assert hits[0].image_id == 999 and store.count(LIB) == 301
    finally:
        store.close()


def test_a_delete_or_drop_here_is_seen_too(uri: str) -> None:
    store = MilvusVectorStore(uri, exact_copy=False)
    store.delete(LIB, [0])
    store.close()
    assert SnapshotFirst(settings_for(uri), LIB).snapshot is None
    store = MilvusVectorStore(uri)  # with its exact copy: saves a current snapshot again once loaded
    store.open_library(LIB, "m", DIM, create=False)
    assert store.wait_for_copy(LIB)
    store.close()
    fresh = SnapshotFirst(settings_for(uri), LIB)
    assert fresh.snapshot is not None and fresh.count(LIB) == 299
    store = MilvusVectorStore(uri)
    store.drop(LIB)
    store.close()
    gone = SnapshotFirst(settings_for(uri), LIB)
    try:
        assert gone.snapshot is None and gone.meta(LIB) is None
    finally:
        gone.close()


def test_no_snapshot_while_another_process_holds_lite(uri: str, tmp_path: Path) -> None:
    ready, release = tmp_path / "ready", tmp_path / "release"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import pathlib, time
        from searchcore.stores.vectors import MilvusVectorStore
        store = MilvusVectorStore({uri!r}, exact_copy=False)
        pathlib.Path({str(ready)!r}).touch()
        while not pathlib.Path({str(release)!r}).exists():
            time.sleep(0.05)
        store.close()
    """)], cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    try:
        for _ in range(1200):
            if ready.exists() or holder.poll() is not None:
                break
            subprocess.run(["sleep", "0.1"], check=True)
        assert ready.exists()
        assert snapshot.load(uri, LIB) is None  # a writer may be half-way: Lite alone knows
    finally:
        release.touch()
        holder.wait(120)
    assert snapshot.load(uri, LIB) is not None  # it wrote nothing: the folder is as saved


def test_a_damaged_snapshot_is_not_used(uri: str, caplog: pytest.LogCaptureFixture) -> None:
    path = snapshot.folder_of(uri) / f"{LIB}.snap"
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))  # cut short
    with caplog.at_level(logging.WARNING, logger="searchcore.stores.snapshot"):
        assert snapshot.load(uri, LIB) is None
    assert any("unreadable" in r.getMessage() for r in caplog.records)
    path.write_bytes(b"not a snapshot at all")
    assert snapshot.load(uri, LIB) is None


def test_the_cli_search_answers_from_the_snapshot_as_from_lite(settings: Settings, dataset: Path) -> None:
    with Engine(settings) as engine:
        engine.ingest(dataset, split="valid")
    queries = ["红色的圆形", "蓝色的正方形", "绿色的三角形"]
    found = {}
    for mode in ("semantic", None):  # None: hybrid, as this library has captions: its keywords come from Lite
        with Engine(settings, exact_copy=False, one_question=True) as engine:
            assert isinstance(engine.vectors, SnapshotFirst) and engine.vectors.snapshot is not None
            found[mode, "snapshot"] = [[r.to_json() for r in engine.search_text(q, 10, mode=mode)] for q in queries]
            assert (engine.vectors._milvus is None) == (mode == "semantic")
        with Engine(settings, exact_copy=False) as engine:
            found[mode, "lite"] = [[r.to_json() for r in engine.search_text(q, 10, mode=mode)] for q in queries]
        for mine, theirs in zip(found[mode, "snapshot"], found[mode, "lite"]):
            assert [r["image_id"] for r in mine] == [r["image_id"] for r in theirs]
            assert [r["similarity"] for r in mine] == pytest.approx([r["similarity"] for r in theirs],
                                                                    abs=SCORE_TOLERANCE)


def test_a_snapshot_of_another_layout_is_replaced_at_the_next_close(uri: str) -> None:
    """A snapshot whose columns this version does not read (an older copy's layout) is not used, and the next
    close with a complete copy saves a readable one, though Lite has not changed."""
    path = snapshot.folder_of(uri) / f"{LIB}.snap"
    path.write_bytes(path.read_bytes().replace(b'"_taken"', b'"_taker"', 1))  # a column this version lacks
    assert snapshot.load(uri, LIB) is None
    store = MilvusVectorStore(uri)
    store.open_library(LIB, "m", DIM, create=False)
    assert store.wait_for_copy(LIB)
    store.close()
    assert snapshot.load(uri, LIB) is not None
