"""`searchcore migrate` on a folder library built by the previous release, which kept every folder picture's
original in the image store and had no video fields (tests/previous_release.py writes that release's own layout
of both stores): the originals go,
thumbnails take their place, the store shrinks, every search answers as before, and a SIGKILL part-way is
finished by running it again. On SQLite and on MariaDB."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from demo.shapes import CLASSES, draw
from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.models.encoder import Encoder
from searchcore.search import SearchResult
from searchcore.sources.imaging import decode_image
from searchcore.stores.filters import Filters
from tests.previous_release import TABLE, as_previous_release, connect, is_mysql, rows, vectors_as_previous_release
from tests.stores.test_exact_copy import assert_same_hits
from tests.support import run_cli, settings_env

KILLED = Path(__file__).parents[1] / "ingest_killed_at.py"
PLAIN = 70  # with the three below, three batches of the migration (32, 32, 9)
QUERIES = ["红色的圆形", "蓝色的正方形", "绿色的三角形", "黄色的星星", "一张照片"]


def picture(seed: int, fmt: str = "JPEG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    draw(*CLASSES[seed % len(CLASSES)], random.Random(seed), (800, 600)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def photo_folder(root: Path) -> Path:
    """Plain JPEGs in two year folders, and the pictures the previous release stored re-encoded or as they
    were: a JPEG turned by its EXIF orientation, a PNG, a TIFF."""
    for n in range(PLAIN):
        year = root / str(2023 + n % 2)
        year.mkdir(parents=True, exist_ok=True)
        (year / f"IMG_{n:03d}.jpg").write_bytes(picture(n, quality=90))
    turned = Image.Exif()
    turned[0x0112] = 6  # shown turned by 90 degrees: 600 wide, 800 high
    (root / "turned.jpg").write_bytes(picture(100, quality=90, exif=turned))
    (root / "drawing.png").write_bytes(picture(101, "PNG"))
    (root / "scan.tif").write_bytes(picture(102, "TIFF"))
    return root


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.server)])
def store_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The tiny-model settings on an image store of this test's own: SQLite, or a MariaDB database."""
    if request.param == "sqlite":
        return settings
    server = request.getfixturevalue("mariadb_server")
    return settings.replace(db_url=server.url(request.getfixturevalue("doomed_database")))


def store_bytes(db_url: str) -> int:
    """The disk space of the images: the SQLite file (WAL included), or the images table's InnoDB file."""
    if not is_mysql(db_url):
        return sum(p.stat().st_size for p in Path(db_url).parent.glob(Path(db_url).name + "*"))
    with connect(db_url) as conn:
        cur = conn.cursor()
        cur.execute("SELECT file_size FROM information_schema.innodb_sys_tablespaces"
                    f" WHERE name = CONCAT(DATABASE(), '/{TABLE}')")
        return int(cur.fetchone()[0])


def columns(db_url: str) -> set[str]:
    with connect(db_url) as conn:
        cur = conn.cursor()
        if is_mysql(db_url):
            cur.execute(f"SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE()"
                        f" AND table_name = '{TABLE}'")
            return {str(r[0]).lower() for r in cur.fetchall()}
        return {r[1] for r in cur.execute(f"PRAGMA table_info({TABLE})").fetchall()}


def thumbnails_stored(db_url: str) -> int:
    with connect(db_url) as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT(*) FROM {TABLE} WHERE thumb = 1")
        return int(cur.fetchone()[0])


def every_search(engine: Engine, root: Path) -> list[list[SearchResult]]:
    """What each kind of search answers, whole library deep: text queries, a folder filter, an image query and
    "more like this" (every field of every result: id, rank, score, format, size, path, date)."""
    everything = PLAIN + 3
    some = next(iter(engine.images.ids(engine.settings.library)))
    answers = [engine.search_text(q, everything) for q in QUERIES]
    answers.append(engine.search_text(QUERIES[0], everything, filters=Filters.parse(folder="2024")))
    answers.append(engine.search_image((root / "2023" / "IMG_000.jpg").read_bytes(), everything))
    answers.append(engine.search_similar(some, everything))
    return answers


def assert_same_answers(now: list[list[SearchResult]], before: list[list[SearchResult]]) -> None:
    """The same results in the same order, scores within SCORE_TOLERANCE, and every other field alike. A search
    may be answered by Lite or by its exact copy, whose scores differ in the last bits (see ExactCopy), so hits
    within the tolerance of each other may come in either order."""
    assert_same_hits(now, before, PLAIN + 4)  # type: ignore[arg-type]  (a SearchResult has the Hit's fields)
    for mine, theirs in zip(now, before):
        assert {r.image_id: shown(r) for r in mine} == {r.image_id: shown(r) for r in theirs}


def shown(result: SearchResult) -> tuple[Any, ...]:
    """What a result shows, its score aside."""
    return (result.image_id, result.format, result.width, result.height, result.path, result.taken,
            result.captions, result.text)


def test_migration_of_a_library_built_by_the_previous_release(store_settings: Settings, torch_encoder: Encoder,
                                                             tmp_path: Path) -> None:
    settings, db = store_settings, store_settings.db_url
    root = photo_folder(tmp_path / "photos")
    with Engine(settings, encoder=torch_encoder) as engine:
        assert engine.ingest(root).added == PLAIN + 3
    as_previous_release(db)
    vectors_as_previous_release(settings.milvus_uri, settings.library)

    # The previous release's layout: no thumb column, and every folder picture whole.
    assert "thumb" not in columns(db)
    stored = {r[9]: r for r in rows(db, TABLE)}
    for path, row in stored.items():
        assert row[2] == decode_image((root / path).read_bytes()).data
    assert stored["2023/IMG_000.jpg"][2] == (root / "2023" / "IMG_000.jpg").read_bytes()
    assert (stored["turned.jpg"][3], stored["drawing.png"][3], stored["scan.tif"][3]) == ("JPEG", "PNG", "JPEG")
    before_bytes = store_bytes(db)
    with Engine(settings, encoder=torch_encoder) as engine:  # this version opens it as it is
        before = every_search(engine, root)
        assert len(before[0]) == PLAIN + 3 and engine.check().consistent

    env = {**os.environ, **settings_env(settings)}
    killed = subprocess.run([sys.executable, str(KILLED), "thumbnails:2", "--migrate"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert thumbnails_stored(db) == 32, "the first batch was migrated, the second was not"

    done = run_cli("migrate", "--json", env=settings_env(settings))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"library": settings.library, "migrated": True, "thumbnails": PLAIN + 3 - 32}

    # Thumbnails present, originals dropped, the store smaller.
    after_rows = {r[9]: r for r in rows(db, TABLE)}
    assert thumbnails_stored(db) == len(after_rows) == PLAIN + 3
    for path, row in after_rows.items():
        small = Image.open(io.BytesIO(row[2]))
        assert small.format == "JPEG" and max(small.size) <= 512, (path, small.size)
        assert row[2] != (root / path).read_bytes() and len(row[2]) < len(stored[path][2])
        assert (row[3], row[4], row[5]) == (stored[path][3], stored[path][4], stored[path][5])  # format, size
    assert Image.open(io.BytesIO(after_rows["turned.jpg"][2])).size == (384, 512)  # upright, as it was shown
    after_bytes = store_bytes(db)
    assert after_bytes < before_bytes / 2, (after_bytes, before_bytes)

    with Engine(settings, encoder=torch_encoder) as engine:
        assert_same_answers(every_search(engine, root), before)
        for image_id in engine.images.ids(settings.library):  # the originals, from their files, byte for byte
            original = engine.original(image_id)
            assert original.data == (root / original.path).read_bytes()
        assert engine.check().consistent
    again = run_cli("migrate", "--json", env=settings_env(settings))
    assert json.loads(again.stdout) == {"library": settings.library, "migrated": False}
