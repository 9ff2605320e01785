"""A folder library as the previous release left it on disk, for the migration tests.

The previous release is commit 0d0395d (2026-11-28), the last before folder pictures kept thumbnails. Its
image store kept every folder picture whole: the file's bytes as they are, or, for a picture turned by its
EXIF orientation or in a format browsers do not show (TIFF, HEIC), the upright picture re-encoded as a JPEG;
its images table had no `thumb` (nor video) column, and there was no videos table. Its Milvus collection had
four fields (id, vector, path, taken), none for video frames. Its file records are what this version writes.

`as_previous_release` rewrites a library this version ingested into that layout: the tables made by the
previous release's own statements (copied below as that release had them) and every row copied over, the
picture's bytes and format as that release stored them (`decode_image` without a thumbnail still stores
what it stored then); `vectors_as_previous_release` makes the collection again with that release's
four fields, index and properties, holding the same vectors.

Both were checked by hand against the previous release's code itself (`git archive 0d0395d`, its `searchcore
ingest` of a folder of JPEGs in sub-folders, an EXIF-turned JPEG, a PNG and a TIFF, on SQLite and on
MariaDB): the same table definitions and the same rows, byte for byte, apart from the time in the
library-state table; the same collection fields, index and properties, and the same ids, vectors, paths and
dates.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from searchcore.sources.datasets import file_path
from searchcore.sources.imaging import decode_image

PREVIOUS_RELEASE = "0d0395d"
TABLE, FILES, STATE = "searchcore_images", "searchcore_files", "searchcore_library_state"
LATER_TABLES = ("searchcore_videos",)  # tables this version has and the previous release had not
IMAGE_COLUMNS = ("library", "image_id", "data", "format", "width", "height", "sha256", "source", "captions", "path",
                 "taken", "ocr_text", "ocr_confidence")
COLUMNS = {TABLE: IMAGE_COLUMNS, FILES: ("library", "file_key", "root", "path", "size", "mtime_ns", "image_id"),
           STATE: ("library", "updated")}

# The previous release's statements (searchcore/image_store.py at 0d0395d), as it ran them.
SQLITE_SCHEMA = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        library TEXT NOT NULL, image_id INTEGER NOT NULL, data BLOB NOT NULL, format TEXT NOT NULL,
        width INTEGER NOT NULL, height INTEGER NOT NULL, sha256 TEXT NOT NULL, source TEXT,
        captions TEXT, path TEXT, taken BIGINT, ocr_text TEXT, ocr_confidence REAL, PRIMARY KEY (library, image_id));
    CREATE TABLE IF NOT EXISTS {FILES} (
        library TEXT NOT NULL, file_key TEXT NOT NULL, root TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL, image_id INTEGER NOT NULL, PRIMARY KEY (library, file_key));
    CREATE INDEX IF NOT EXISTS {FILES}_image ON {FILES} (library, image_id);
    CREATE TABLE IF NOT EXISTS {STATE} (library TEXT PRIMARY KEY, updated REAL NOT NULL)"""
MYSQL_SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        library VARCHAR(64) NOT NULL, image_id BIGINT NOT NULL, data LONGBLOB NOT NULL,
        format VARCHAR(16) NOT NULL, width INT NOT NULL, height INT NOT NULL, sha256 CHAR(64) NOT NULL,
        source VARCHAR(1000), captions MEDIUMTEXT, path TEXT, taken BIGINT, ocr_text MEDIUMTEXT, ocr_confidence REAL,
        PRIMARY KEY (library, image_id)
    ) CHARACTER SET utf8mb4""",
    f"""CREATE TABLE IF NOT EXISTS {FILES} (
        library VARCHAR(64) NOT NULL, file_key CHAR(40) NOT NULL, root TEXT NOT NULL, path TEXT NOT NULL,
        size BIGINT NOT NULL, mtime_ns BIGINT NOT NULL, image_id BIGINT NOT NULL, PRIMARY KEY (library, file_key),
        KEY image (library, image_id)) CHARACTER SET utf8mb4""",
    f"""CREATE TABLE IF NOT EXISTS {STATE} (library VARCHAR(64) PRIMARY KEY, updated DOUBLE NOT NULL)""")


def is_mysql(db_url: str) -> bool:
    return db_url.startswith(("mysql://", "mysql+pymysql://", "mariadb://"))


@contextmanager
def connect(db_url: str) -> Iterator[Any]:
    """A DB-API connection to the image store at db_url (SQLite path or mysql:// URL), committed on leaving."""
    if is_mysql(db_url):
        import pymysql

        url = urlparse(db_url)
        conn = pymysql.connect(host=url.hostname or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
                               password=url.password or "", database=url.path.lstrip("/"), charset="utf8mb4")
    else:
        conn = sqlite3.connect(db_url)
    try:
        yield conn
        conn.commit()
    finally:
        conn.close()


def rows(db_url: str, table: str) -> list[tuple[Any, ...]]:
    """Every row of one of the store's tables, in the previous release's columns, ordered."""
    columns = COLUMNS[table]
    with connect(db_url) as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {', '.join(columns[:2])}")
        return [tuple(bytes(v) if isinstance(v, (bytes, memoryview)) else v for v in r) for r in cur.fetchall()]


def as_previous_release(db_url: str) -> None:
    """Rewrite the image store at db_url (no store may have it open) as the previous release would have
    written the same library: its schema, and each folder picture's whole picture instead of a thumbnail."""
    kept = {table: rows(db_url, table) for table in COLUMNS}
    where = {(r[0], r[6]): Path(file_path(r[2]), file_path(r[3])) for r in kept[FILES]}
    images = []
    for row in kept[TABLE]:
        file = where.get((row[0], row[1]))
        if file is not None:  # a folder picture: the whole picture, as that release stored it
            whole = decode_image(file.read_bytes())
            row = (*row[:2], whole.data, whole.format, *row[4:])
        images.append(row)
    kept[TABLE] = images

    if is_mysql(db_url):
        with connect(db_url) as conn:
            cur = conn.cursor()
            for table in (*COLUMNS, *LATER_TABLES):
                cur.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in MYSQL_SCHEMA:
                cur.execute(statement)
            _insert(cur, "%s", kept)
        return
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db_url + suffix):
            os.remove(db_url + suffix)
    with connect(db_url) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SQLITE_SCHEMA)
        _insert(conn.cursor(), "?", kept)


def _insert(cur: Any, mark: str, kept: dict[str, Sequence[tuple[Any, ...]]]) -> None:
    for table, columns in COLUMNS.items():
        cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})",
                        kept[table])


def vectors_as_previous_release(milvus_uri: str, library: str) -> None:
    """Make a library's collection again (no store may have it open) as the previous release created it:
    fields id, vector, path and taken, the same index and properties, and the same vectors and fields."""
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(milvus_uri)
    name = "searchcore_" + library
    try:
        properties = {k: v for k, v in client.describe_collection(name)["properties"].items()
                      if k.startswith("searchcore.")}
        client.load_collection(name)
        kept = client.query(name, filter="id >= 0", output_fields=["id", "vector", "path", "taken"], limit=16384)
        index = json.loads(properties["searchcore.index"])
        client.drop_collection(name)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(properties["searchcore.dim"]))
        schema.add_field("path", DataType.VARCHAR, max_length=1024)
        schema.add_field("taken", DataType.INT64)
        index_params = client.prepare_index_params()
        index_params.add_index(field_name="vector", index_type=index["type"], metric_type="IP",
                               params=index["params"])
        client.create_collection(name, schema=schema, index_params=index_params, consistency_level="Strong",
                                 properties=properties)
        client.insert(name, [{k: row[k] for k in ("id", "vector", "path", "taken")} for row in kept])
        client.flush(name)
    finally:
        client.close()
