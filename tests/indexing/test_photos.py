"""A folder of photos as its owner keeps it: re-scans that read only what changed, moves, deletions with and
without --sync (and a crash during one), EXIF dates, folder and date filters, and libraries from before."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo.shapes import CLASSES, draw
from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.errors import LibraryError, QueryError
from searchcore.models.encoder import Encoder
from searchcore.stores import vectors as vector_store
from searchcore.stores.filters import Filters
from tests.support import run_cli, settings_env

KILLED_INGEST = Path(__file__).parents[1] / "ingest_killed_at.py"
RED_CIRCLE = next(c for c in CLASSES if c == ("红色", "圆形"))
BLUE_SQUARE = next(c for c in CLASSES if c == ("蓝色", "正方形"))


def picture(cls: tuple[str, str], seed: int, taken: str | None = None) -> bytes:
    """A JPEG of a shape; with taken ("YYYY:MM:DD HH:MM:SS"), EXIF DateTimeOriginal as a camera writes it."""
    buffer = io.BytesIO()
    image = draw(*cls, random.Random(seed), (96, 96))
    if taken is None:
        image.save(buffer, format="JPEG", quality=90)
    else:
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9003] = taken
        image.save(buffer, format="JPEG", quality=90, exif=exif)
    return buffer.getvalue()


def write(path: Path, data: bytes, mtime: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        stamp = dt.datetime.fromisoformat(mtime).timestamp()
        os.utime(path, (stamp, stamp))
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Twelve shape pictures in year folders: 2023 with file times only, 2024/旅行 with EXIF dates."""
    root = tmp_path / "photos"
    for i in range(6):
        write(root / "2023" / f"IMG_{i}.jpg", picture(CLASSES[i % len(CLASSES)], i), f"2023-0{i + 1}-15 12:00")
    for i in range(6):
        write(root / "2024" / "旅行" / f"IMG_{i}.jpg",
              picture(CLASSES[(i + 3) % len(CLASSES)], 100 + i, f"2024:07:{10 + i:02d} 09:30:00"),
              "2025-01-01 00:00")  # the file time is later (a copy); EXIF wins
    return root


class CountingReads:
    """Counts files read under a folder (the folder source reads with Path.read_bytes)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
        self.paths: list[str] = []
        real = Path.read_bytes

        def read_bytes(path: Path) -> bytes:
            if str(path).startswith(str(root)):
                self.paths.append(path.relative_to(root).as_posix())
            return real(path)

        monkeypatch.setattr(Path, "read_bytes", read_bytes)


def ids_in(engine: Engine, library: str | None = None) -> tuple[set[int], set[int]]:
    name = library or engine.settings.library
    return set(engine.images.ids(name)), set(engine.vectors.ids(name))


def test_rescan_reads_no_unchanged_file(engine: Engine, photos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = engine.ingest(photos)
    assert (first.added, first.unchanged, first.bad) == (12, 0, [])

    reads = CountingReads(monkeypatch, photos)
    again = engine.ingest(photos)

    assert reads.paths == [], "an unchanged file is never opened"
    assert (again.added, again.changed, again.unchanged, again.moved, again.removed, again.missing) == \
        (0, 0, 12, 0, 0, 0)


def test_changed_file_is_read_and_encoded_again(engine: Engine, photos: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    engine.ingest(photos)
    target = photos / "2023" / "IMG_0.jpg"
    write(target, picture(BLUE_SQUARE, 999))
    touched = photos / "2023" / "IMG_1.jpg"
    os.utime(touched, None)  # a new mtime, the same content

    reads = CountingReads(monkeypatch, photos)
    report = engine.ingest(photos, sync=True)

    assert sorted(reads.paths) == ["2023/IMG_0.jpg", "2023/IMG_1.jpg"]
    assert (report.added, report.changed, report.unchanged, report.removed) == (0, 1, 11, 1)
    images, vectors = ids_in(engine)
    assert len(images) == len(vectors) == 12 and images == vectors
    best = engine.search_text("蓝色的正方形", 1, filters=Filters.parse(folder="2023"))[0]
    assert best.path == "2023/IMG_0.jpg"


def test_moved_file_keeps_its_vector(engine: Engine, photos: Path) -> None:
    engine.ingest(photos)
    old = photos / "2023" / "IMG_2.jpg"
    image_id = next(r.image_id for r in engine.search_text("x", 1000) if r.path == "2023/IMG_2.jpg")
    before = engine.vectors.vectors(engine.settings.library, [image_id])[image_id]
    new = photos / "2025" / "整理" / "moved.jpg"
    new.parent.mkdir(parents=True)
    old.rename(new)

    report = engine.ingest(photos)

    assert (report.added, report.moved, report.missing, report.removed) == (0, 1, 0, 0)
    after = engine.vectors.vectors(engine.settings.library, [image_id])[image_id]
    assert np.array_equal(before, after)
    found = engine.search_text("x", 100, filters=Filters.parse(folder="2025/整理"))
    assert [(r.image_id, r.path) for r in found] == [(image_id, "2025/整理/moved.jpg")]
    assert engine.search_text("x", 100, filters=Filters.parse(folder="2023")).__len__() == 5
    assert engine.ingest(photos).unchanged == 12


def test_deleted_file_is_kept_without_sync_and_removed_with_it(engine: Engine, photos: Path) -> None:
    engine.ingest(photos)
    (photos / "2024" / "旅行" / "IMG_0.jpg").unlink()

    kept = engine.ingest(photos)
    assert (kept.missing, kept.removed, kept.unchanged) == (1, 0, 11)
    assert "1 files missing" in kept.summary() and "--sync" in kept.summary()
    assert all(len(s) == 12 for s in ids_in(engine))

    synced = engine.ingest(photos, sync=True)
    assert (synced.missing, synced.removed, synced.unchanged) == (0, 1, 11)
    images, vectors = ids_in(engine)
    assert images == vectors and len(images) == 11
    assert engine.check().consistent
    assert engine.ingest(photos, sync=True).removed == 0


def test_a_copy_stays_while_another_file_holds_it(engine: Engine, photos: Path) -> None:
    data = (photos / "2023" / "IMG_3.jpg").read_bytes()
    write(photos / "备份" / "IMG_3.jpg", data)
    first = engine.ingest(photos)
    assert (first.added, first.present) == (12, 1)
    (photos / "2023" / "IMG_3.jpg").unlink()

    report = engine.ingest(photos, sync=True)

    assert report.removed == 1
    assert len(ids_in(engine)[0]) == 12, "the backup still holds the picture"


@pytest.mark.parametrize("point", ["remove_images:1", "forget_files:1"])
def test_sync_killed_part_way_is_finished_by_the_next_run(settings: Settings, torch_encoder: Encoder,
                                                          photos: Path, point: str) -> None:
    env = {**settings_env(settings), "SEARCHCORE_BATCH_SIZE": "4"}
    done = run_cli("ingest", str(photos), "--json", env=env)
    assert done.returncode == 0, done.stderr
    for gone in ("2023/IMG_4.jpg", "2024/旅行/IMG_5.jpg"):
        (photos / gone).unlink()

    proc = subprocess.run([sys.executable, str(KILLED_INGEST), point, str(photos), "--sync"],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]

    done = run_cli("ingest", str(photos), "--sync", "--json", env=env)
    assert done.returncode == 0, done.stderr
    checked = run_cli("check", "--json", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["images"] == 10
    again = json.loads(run_cli("ingest", str(photos), "--sync", "--json", env=env).stdout)
    assert (again["unchanged"], again["removed"], again["missing"]) == (10, 0, 0)


def test_exif_date_then_file_time_become_the_taken_date(engine: Engine, photos: Path) -> None:
    engine.ingest(photos)
    results = {r.path: r for r in engine.search_text("x", 100)}
    assert dt.datetime.fromtimestamp(results["2024/旅行/IMG_2.jpg"].taken, dt.UTC).strftime("%Y-%m-%d %H:%M") \
        == "2024-07-12 09:30"
    assert dt.datetime.fromtimestamp(results["2023/IMG_3.jpg"].taken, dt.UTC).strftime("%Y-%m-%d") == "2023-04-15"


def test_folder_and_date_filters_keep_only_matching_images(engine: Engine, photos: Path) -> None:
    engine.ingest(photos)

    def paths(**given: str) -> set[str]:
        return {r.path for r in engine.search_text("红色的圆形", 100, filters=Filters.parse(**given))}

    assert paths(folder="2024") == {f"2024/旅行/IMG_{i}.jpg" for i in range(6)}
    assert paths(folder="2024/旅行/") == paths(folder="2024")
    assert paths(folder="202") == set(), "a folder matches whole path parts, not a prefix of a name"
    assert paths(since="2024-07-12", until="2024-07-13") == {"2024/旅行/IMG_2.jpg", "2024/旅行/IMG_3.jpg"}
    assert paths(until="2023-03-15") == {"2023/IMG_0.jpg", "2023/IMG_1.jpg", "2023/IMG_2.jpg"}
    assert paths(folder="2023", since="2023-05-01") == {"2023/IMG_4.jpg", "2023/IMG_5.jpg"}
    # the same answer from Milvus itself as from the in-process copy
    engine.vectors.exact_copy = False  # type: ignore[attr-defined]
    assert paths(folder="2023", since="2023-05-01") == {"2023/IMG_4.jpg", "2023/IMG_5.jpg"}


@pytest.mark.parametrize("given, message", [
    ({"since": "2024-13-01"}, "since must be a date"),
    ({"until": "yesterday"}, "until must be a date"),
    ({"since": "2024-05-02", "until": "2024-05-01"}, "after until"),
    ({"folder": '2024" or id > 0 or path == "'}, "characters"),
    ({"folder": "../etc"}, "relative path"),
])
def test_bad_filters_are_refused_before_any_search(given: dict[str, str], message: str) -> None:
    with pytest.raises(QueryError, match=message):
        Filters.parse(**given)


def test_filters_through_the_cli_and_the_api(settings: Settings, photos: Path) -> None:
    from fastapi.testclient import TestClient

    from searchcore.web.api import create_app

    env = settings_env(settings)
    assert run_cli("ingest", str(photos), env=env).returncode == 0
    done = run_cli("search", "蓝色的正方形", "--folder", "2023", "--since", "2023-02-01", "--until", "2023-04-30",
                   "--top-k", "50", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert sorted(r["path"] for r in json.loads(done.stdout)) == ["2023/IMG_1.jpg", "2023/IMG_2.jpg",
                                                                   "2023/IMG_3.jpg"]
    bad = run_cli("search", "猫", "--since", "2023-02-30", env=env)
    assert bad.returncode == 1 and bad.stderr.startswith("error: since must be a date")

    engine = Engine(settings)
    try:
        client = TestClient(create_app(engine))
        page = client.post("/api/search", json={"text": "红色的圆形", "top_k": 3, "offset": 2, "folder": "2024/旅行"})
        assert page.status_code == 200, page.text
        assert [h["rank"] for h in page.json()] == [3, 4, 5]
        assert all(h["path"].startswith("2024/旅行/") and h["taken"].startswith("2024-07-") for h in page.json())
        whole = client.post("/api/search", json={"text": "红色的圆形", "top_k": 5, "folder": "2024/旅行"}).json()
        assert [h["image_id"] for h in whole[2:]] == [h["image_id"] for h in page.json()]
        refused = client.post("/api/search", json={"text": "猫", "folder": 'a" or "1'})
        assert refused.status_code == 400 and "characters" in refused.json()["detail"]
    finally:
        engine.close()


def test_a_library_from_before_filters_is_migrated_keeping_its_vectors(
        settings: Settings, torch_encoder: Encoder, photos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pymilvus import DataType, MilvusClient

    def old_schema(dim: int) -> object:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        return schema

    with monkeypatch.context() as patch:
        patch.setattr(vector_store, "collection_schema", old_schema)
        engine = Engine(settings, encoder=torch_encoder)
        engine.ingest(photos)
        engine.close()
    engine = Engine(settings, encoder=torch_encoder)
    try:
        assert engine.info().filterable is False
        unfiltered = [r.image_id for r in engine.search_text("红色的圆形", 12)]
        with pytest.raises(LibraryError, match="searchcore migrate"):
            engine.search_text("红色的圆形", 5, filters=Filters.parse(folder="2023"))
        before = engine.vectors.vectors(settings.library, unfiltered)
    finally:
        engine.close()

    done = run_cli("migrate", "--json", env=settings_env(settings))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"library": settings.library, "migrated": True}

    engine = Engine(settings, encoder=torch_encoder)
    try:
        assert engine.info().filterable is True
        assert [r.image_id for r in engine.search_text("红色的圆形", 12)] == unfiltered
        after = engine.vectors.vectors(settings.library, unfiltered)
        assert all(np.array_equal(before[i], after[i]) for i in unfiltered)
        assert {r.path for r in engine.search_text("x", 50, filters=Filters.parse(folder="2023"))} == \
            {f"2023/IMG_{i}.jpg" for i in range(6)}
        assert engine.migrate() is False
    finally:
        engine.close()
