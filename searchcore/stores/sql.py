"""The image database's one connection: SQLite or MySQL (pymysql), its tables, and what every table's part shares.

The tables are created and upgraded here, so their definitions stay in one place (docs/ARCHITECTURE.md's schema
section is written from them); images.py, videos.py and folder_files.py each query their own tables over the
connection, and image_db.py joins them into one object."""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import unquote, urlparse

from searchcore.config import data_path, validate_library
from searchcore.errors import BackendUnavailableError, ConfigError

log = logging.getLogger(__name__)

TABLE = "searchcore_images"
FILES = "searchcore_files"  # the files of folder libraries: path, size and mtime, for stat-only re-scans
VIDEOS = "searchcore_videos"  # the videos of folder libraries (their frames are rows of TABLE)
STATE = "searchcore_library_state"  # when each library last changed
ID_BATCH = 500
# Columns added after the first release; an older table gains them when a store opens it.
ADDED_COLUMNS = {"path": "TEXT", "taken": "BIGINT", "ocr_text": "TEXT", "ocr_confidence": "REAL",
                 "thumb": "INTEGER", "video_id": "BIGINT", "time_s": "REAL"}
# SQLite's index of frames by their video, made once the column exists (MySQL's is the table's KEY video)
FRAMES_INDEX = f"CREATE INDEX IF NOT EXISTS {TABLE}_video ON {TABLE} (library, video_id)"


class SqlTables:
    """What each table's part uses of the connection; SQLiteDatabase and MySQLDatabase supply it and the dialect.

    It also keeps the library state: every part's write records when its library last changed."""

    backend = "sql"
    max_blob_bytes = 1 << 30
    placeholder = "?"
    insert_ignore = "INSERT OR IGNORE"
    schema = ""

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        raise NotImplementedError
        yield

    def _touch(self, cur: Any, library: str) -> None:
        cur.execute(f"REPLACE INTO {STATE} (library, updated) VALUES ({self.placeholder}, {self.placeholder})",
                    (library, time.time()))

    def updated(self, library: str) -> float | None:
        """When the library's images last changed (Unix time), or None when never recorded."""
        with self._cursor() as cur:
            cur.execute(f"SELECT updated FROM {STATE} WHERE library = {self.placeholder}", (library,))
            row = cur.fetchone()
        return float(row[0]) if row else None

    def drop(self, library: str) -> None:
        """Remove a library: its images, videos, files and state."""
        validate_library(library)
        with self._cursor() as cur:
            for table in (TABLE, FILES, VIDEOS, STATE):
                cur.execute(f"DELETE FROM {table} WHERE library = {self.placeholder}", (library,))

    def compact(self) -> None:
        """Give the space of deleted bytes back to the file system."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection."""
        raise NotImplementedError

    def _marks(self, chunk: Sequence[int]) -> str:
        return ", ".join([self.placeholder] * len(chunk))

    def _upgrade(self, cur: Any, columns: set[str]) -> None:
        """Give a table made by an older version the columns added since (its rows get NULL: unknown)."""
        for name, kind in ADDED_COLUMNS.items():
            if name not in columns:
                cur.execute(f"ALTER TABLE {TABLE} ADD COLUMN {name} {kind}")
                log.info("image store: added column %s to %s", name, TABLE)
        self._index_videos(cur, "video_id" not in columns)

    def _index_videos(self, cur: Any, added: bool) -> None:
        """Index frames by their video (video_frames reads them so), once the column exists."""
        cur.execute(FRAMES_INDEX)


class SQLiteDatabase(SqlTables):
    """One SQLite file, shared by the threads of one process (a lock around each transaction)."""

    backend = "sqlite"
    schema = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        library TEXT NOT NULL, image_id INTEGER NOT NULL, data BLOB NOT NULL, format TEXT NOT NULL,
        width INTEGER NOT NULL, height INTEGER NOT NULL, sha256 TEXT NOT NULL, source TEXT,
        captions TEXT, path TEXT, taken BIGINT, ocr_text TEXT, ocr_confidence REAL, thumb INTEGER,
        video_id BIGINT, time_s REAL, PRIMARY KEY (library, image_id));
    CREATE TABLE IF NOT EXISTS {FILES} (
        library TEXT NOT NULL, file_key TEXT NOT NULL, root TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL, image_id INTEGER NOT NULL, PRIMARY KEY (library, file_key));
    CREATE INDEX IF NOT EXISTS {FILES}_image ON {FILES} (library, image_id);
    CREATE TABLE IF NOT EXISTS {VIDEOS} (
        library TEXT NOT NULL, video_id INTEGER NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL, duration REAL NOT NULL, width INTEGER NOT NULL,
        height INTEGER NOT NULL, taken BIGINT NOT NULL, frame_interval REAL NOT NULL, PRIMARY KEY (library, video_id));
    CREATE TABLE IF NOT EXISTS {STATE} (library TEXT PRIMARY KEY, updated REAL NOT NULL)"""

    def __init__(self, path: str) -> None:
        self.path = data_path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(self.schema)
            with self._cursor() as cur:
                self._upgrade(cur, {r[1] for r in cur.execute(f"PRAGMA table_info({TABLE})").fetchall()})
        except sqlite3.Error as exc:
            raise BackendUnavailableError("image_db_unopenable", db=self.path, reason=str(exc)) from exc

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN")
                yield cur
                cur.execute("COMMIT")
            except sqlite3.Error as exc:
                self._conn.rollback()
                raise BackendUnavailableError("image_db_failed", db=self.path, reason=str(exc)) from exc
            except BaseException:
                self._conn.rollback()
                raise
            finally:
                cur.close()

    def compact(self) -> None:
        """VACUUM: rewrite the file without the pages deleted bytes held, so that it shrinks."""
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._conn.execute("VACUUM")
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise BackendUnavailableError("image_db_failed", db=self.path, reason=str(exc)) from exc

    def close(self) -> None:
        """Close the file."""
        self._conn.close()


class MySQLDatabase(SqlTables):
    """MySQL or MariaDB through pymysql: a small pool of connections, each pinged before use."""

    backend = "mysql"
    placeholder = "%s"
    insert_ignore = "INSERT IGNORE"
    schema = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        library VARCHAR(64) NOT NULL, image_id BIGINT NOT NULL, data LONGBLOB NOT NULL,
        format VARCHAR(16) NOT NULL, width INT NOT NULL, height INT NOT NULL, sha256 CHAR(64) NOT NULL,
        source VARCHAR(1000), captions MEDIUMTEXT, path TEXT, taken BIGINT, ocr_text MEDIUMTEXT, ocr_confidence REAL,
        thumb INTEGER, video_id BIGINT, time_s REAL, PRIMARY KEY (library, image_id), KEY video (library, video_id)
    ) CHARACTER SET utf8mb4"""
    extra_tables = (
        f"""CREATE TABLE IF NOT EXISTS {FILES} (
        library VARCHAR(64) NOT NULL, file_key CHAR(40) NOT NULL, root TEXT NOT NULL, path TEXT NOT NULL,
        size BIGINT NOT NULL, mtime_ns BIGINT NOT NULL, image_id BIGINT NOT NULL, PRIMARY KEY (library, file_key),
        KEY image (library, image_id)) CHARACTER SET utf8mb4""",
        f"""CREATE TABLE IF NOT EXISTS {STATE} (library VARCHAR(64) PRIMARY KEY, updated DOUBLE NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS {VIDEOS} (
        library VARCHAR(64) NOT NULL, video_id BIGINT NOT NULL, path TEXT NOT NULL, size BIGINT NOT NULL,
        mtime_ns BIGINT NOT NULL, sha256 CHAR(64) NOT NULL, duration DOUBLE NOT NULL, width INT NOT NULL,
        height INT NOT NULL, taken BIGINT NOT NULL, frame_interval DOUBLE NOT NULL, PRIMARY KEY (library, video_id)
        ) CHARACTER SET utf8mb4""")

    def __init__(self, url: str, pool_size: int = 8) -> None:
        parsed = urlparse(url)
        self._params = {
            "host": parsed.hostname or "127.0.0.1",
            "port": parsed.port or 3306,
            "user": unquote(parsed.username or "root"),
            "password": unquote(parsed.password or ""),
            "database": parsed.path.lstrip("/") or None,
            "charset": "utf8mb4",
            "connect_timeout": 5,
            "read_timeout": 60,
            "write_timeout": 60,
            "autocommit": False,
        }
        if not self._params["database"]:
            raise ConfigError("db_name_missing", url=_redact(url))
        self._label = f"MySQL at {self._params['host']}:{self._params['port']}/{self._params['database']}"
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue(maxsize=pool_size)
        with self._cursor() as cur:
            cur.execute(self.schema)
            for table in self.extra_tables:
                cur.execute(table)
            cur.execute(f"SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE()"
                        f" AND table_name = '{TABLE}'")
            self._upgrade(cur, {str(r[0]).lower() for r in cur.fetchall()})
            cur.execute("SELECT @@max_allowed_packet")
            # pymysql sends a blob escaped inside the INSERT, up to twice its size; leave room for the rest too
            self.max_blob_bytes = (int(cur.fetchone()[0]) - (64 << 10)) // 2

    def _connect(self) -> Any:
        import pymysql

        try:
            return pymysql.connect(**self._params)
        except pymysql.err.Error as exc:
            raise BackendUnavailableError("image_db_unavailable", db=self._label, reason=str(exc)) from exc

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        import pymysql

        try:
            conn, pooled = self._pool.get_nowait(), True
        except queue.Empty:
            conn, pooled = self._connect(), False
        try:
            if pooled:
                # The server may have dropped it while it sat idle (a restart, wait_timeout): reconnect before
                # any statement runs, so no query fails for it and no write is ever sent twice.
                conn.ping(reconnect=True)
            with conn.cursor() as cur:
                yield cur
            conn.commit()
        except pymysql.err.Error as exc:
            _close_quietly(conn)
            if isinstance(exc, (pymysql.err.OperationalError, pymysql.err.InterfaceError)):
                self.close()  # the pooled connections died with this one (a restart): the next call reconnects
                raise BackendUnavailableError("image_db_unavailable", db=self._label, reason=str(exc)) from exc
            raise BackendUnavailableError("image_db_failed", db=self._label, reason=str(exc)) from exc
        except BaseException:
            _close_quietly(conn)
            raise
        else:
            try:
                self._pool.put_nowait(conn)
            except queue.Full:
                conn.close()

    def _index_videos(self, cur: Any, added: bool) -> None:
        if added:  # a table made before videos: the new table has the key from its CREATE
            cur.execute(f"ALTER TABLE {TABLE} ADD KEY video (library, video_id)")

    def compact(self) -> None:
        """OPTIMIZE TABLE: InnoDB rebuilds the table, freeing the space of deleted bytes."""
        with self._cursor() as cur:
            cur.execute(f"OPTIMIZE TABLE {TABLE}")
            cur.fetchall()

    def close(self) -> None:
        """Close pooled connections."""
        while True:
            try:
                _close_quietly(self._pool.get_nowait())
            except queue.Empty:
                return


def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()


def _redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url
