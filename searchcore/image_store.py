"""The relational image store: image bytes, ids and captions, in SQLite or MySQL."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol
from urllib.parse import unquote, urlparse

from .config import data_path, validate_library
from .errors import BackendUnavailableError, ConfigError
from .ids import id_chunks

log = logging.getLogger(__name__)

TABLE = "searchcore_images"
ID_BATCH = 500


@dataclass
class StoredImage:
    """One image as the image store keeps it."""

    image_id: int
    data: bytes
    format: str
    width: int
    height: int
    sha256: str
    source: str = ""
    captions: list[str] = field(default_factory=list)


class ImageMeta(NamedTuple):
    """What the image store knows about one image, without its bytes (a read-only row)."""

    image_id: int
    format: str
    width: int
    height: int
    source: str
    captions: list[str]


class ImageStore(Protocol):
    """What the engine needs from a relational image store."""

    backend: str
    max_blob_bytes: int

    def put_many(self, library: str, images: Sequence[StoredImage]) -> None: ...
    def hashes(self, library: str, ids: Sequence[int]) -> dict[int, str]: ...
    def get_many(self, library: str, ids: Sequence[int]) -> dict[int, StoredImage]: ...
    def get_meta_many(self, library: str, ids: Sequence[int]) -> dict[int, ImageMeta]: ...
    def ids(self, library: str) -> Iterator[int]: ...
    def delete_many(self, library: str, ids: Sequence[int]) -> None: ...
    def count(self, library: str) -> int: ...
    def drop(self, library: str) -> None: ...
    def libraries(self) -> dict[str, int]: ...
    def close(self) -> None: ...


class _SqlImageStore:
    """The SQL both backends share; subclasses supply connections and the dialect."""

    backend = "sql"
    max_blob_bytes = 1 << 30
    placeholder = "?"
    insert_ignore = "INSERT OR IGNORE"
    schema = ""

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        raise NotImplementedError
        yield

    def put_many(self, library: str, images: Sequence[StoredImage]) -> None:
        """Store images; an id already stored is left as it is."""
        validate_library(library)
        if not images:
            return
        p = self.placeholder
        sql = (f"{self.insert_ignore} INTO {TABLE} (library, image_id, data, format, width, height, sha256,"
               f" source, captions) VALUES ({', '.join([p] * 9)})")
        rows = [(library, int(i.image_id), i.data, i.format, i.width, i.height, i.sha256, i.source[:1000],
                 json.dumps(i.captions, ensure_ascii=False)) for i in images]
        with self._cursor() as cur:
            cur.executemany(sql, rows)

    def hashes(self, library: str, ids: Sequence[int]) -> dict[int, str]:
        """The content hash of each id that is stored."""
        return {int(r[0]): r[1] for r in self._rows(library, "image_id, sha256", ids)}

    def get_many(self, library: str, ids: Sequence[int]) -> dict[int, StoredImage]:
        """Stored images by id; ids not stored are absent from the result."""
        rows = self._rows(library, "image_id, data, format, width, height, sha256, source, captions", ids)
        return {int(r[0]): StoredImage(int(r[0]), bytes(r[1]), r[2], int(r[3]), int(r[4]), r[5], r[6] or "",
                                       json.loads(r[7] or "[]")) for r in rows}

    def get_meta_many(self, library: str, ids: Sequence[int]) -> dict[int, ImageMeta]:
        """Stored images' metadata and captions by id, without reading their bytes; ids not stored are absent."""
        rows = self._rows(library, "image_id, format, width, height, source, captions", ids)
        return {int(r[0]): ImageMeta(int(r[0]), r[1], int(r[2]), int(r[3]), r[4] or "", json.loads(r[5] or "[]"))
                for r in rows}

    def _rows(self, library: str, columns: str, ids: Sequence[int]) -> Iterator[Any]:
        """Rows of the given columns for the ids that are stored, read in chunks."""
        for chunk in id_chunks(ids, ID_BATCH):
            with self._cursor() as cur:
                cur.execute(f"SELECT {columns} FROM {TABLE} WHERE library = {self.placeholder}"
                            f" AND image_id IN ({self._marks(chunk)})", (library, *chunk))
                rows = cur.fetchall()
            yield from rows

    def ids(self, library: str) -> Iterator[int]:
        """Every stored id of a library, ascending, fetched in pages."""
        last: int | None = None
        p = self.placeholder
        while True:
            with self._cursor() as cur:
                if last is None:
                    cur.execute(f"SELECT image_id FROM {TABLE} WHERE library = {p} ORDER BY image_id LIMIT 5000",
                                (library,))
                else:
                    cur.execute(f"SELECT image_id FROM {TABLE} WHERE library = {p} AND image_id > {p}"
                                f" ORDER BY image_id LIMIT 5000", (library, last))
                page = [int(r[0]) for r in cur.fetchall()]
            yield from page
            if len(page) < 5000:
                return
            last = page[-1]

    def delete_many(self, library: str, ids: Sequence[int]) -> None:
        """Remove images by id."""
        for chunk in id_chunks(ids, ID_BATCH):
            with self._cursor() as cur:
                cur.execute(f"DELETE FROM {TABLE} WHERE library = {self.placeholder}"
                            f" AND image_id IN ({self._marks(chunk)})", (library, *chunk))

    def count(self, library: str) -> int:
        """Number of images in a library."""
        with self._cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {TABLE} WHERE library = {self.placeholder}", (library,))
            return int(cur.fetchone()[0])

    def drop(self, library: str) -> None:
        """Remove every image of a library."""
        validate_library(library)
        with self._cursor() as cur:
            cur.execute(f"DELETE FROM {TABLE} WHERE library = {self.placeholder}", (library,))

    def libraries(self) -> dict[str, int]:
        """Image counts by library."""
        with self._cursor() as cur:
            cur.execute(f"SELECT library, COUNT(*) FROM {TABLE} GROUP BY library")
            return {r[0]: int(r[1]) for r in cur.fetchall()}

    def _marks(self, chunk: Sequence[int]) -> str:
        return ", ".join([self.placeholder] * len(chunk))


class SQLiteImageStore(_SqlImageStore):
    """The embedded default: one SQLite file, shared by the threads of one process."""

    backend = "sqlite"
    schema = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        library TEXT NOT NULL, image_id INTEGER NOT NULL, data BLOB NOT NULL, format TEXT NOT NULL,
        width INTEGER NOT NULL, height INTEGER NOT NULL, sha256 TEXT NOT NULL, source TEXT,
        captions TEXT, PRIMARY KEY (library, image_id))"""

    def __init__(self, path: str) -> None:
        self.path = data_path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(self.schema)
        except sqlite3.Error as exc:
            raise BackendUnavailableError(f"image database {self.path} cannot be opened: {exc}") from exc

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
                raise BackendUnavailableError(f"image database {self.path} failed: {exc}") from exc
            except BaseException:
                self._conn.rollback()
                raise
            finally:
                cur.close()

    def close(self) -> None:
        """Close the file."""
        self._conn.close()


class MySQLImageStore(_SqlImageStore):
    """MySQL or MariaDB through pymysql, with a small connection pool."""

    backend = "mysql"
    placeholder = "%s"
    insert_ignore = "INSERT IGNORE"
    schema = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        library VARCHAR(64) NOT NULL, image_id BIGINT NOT NULL, data LONGBLOB NOT NULL,
        format VARCHAR(16) NOT NULL, width INT NOT NULL, height INT NOT NULL, sha256 CHAR(64) NOT NULL,
        source VARCHAR(1000), captions MEDIUMTEXT, PRIMARY KEY (library, image_id)
    ) CHARACTER SET utf8mb4"""

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
            raise ConfigError(f"database name missing in SEARCHCORE_DB_URL {_redact(url)}")
        self._label = f"MySQL at {self._params['host']}:{self._params['port']}/{self._params['database']}"
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue(maxsize=pool_size)
        with self._cursor() as cur:
            cur.execute(self.schema)
            cur.execute("SELECT @@max_allowed_packet")
            # pymysql sends a blob escaped inside the INSERT, up to twice its size; leave room for the rest too
            self.max_blob_bytes = (int(cur.fetchone()[0]) - (64 << 10)) // 2

    def _connect(self) -> Any:
        import pymysql

        try:
            return pymysql.connect(**self._params)
        except pymysql.err.Error as exc:
            raise BackendUnavailableError(f"image database {self._label} is unavailable: {exc}") from exc

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
                raise BackendUnavailableError(f"image database {self._label} is unavailable: {exc}") from exc
            raise BackendUnavailableError(f"image database {self._label} failed: {exc}") from exc
        except BaseException:
            _close_quietly(conn)
            raise
        else:
            try:
                self._pool.put_nowait(conn)
            except queue.Full:
                conn.close()

    def close(self) -> None:
        """Close pooled connections."""
        while True:
            try:
                _close_quietly(self._pool.get_nowait())
            except queue.Empty:
                return


def open_image_store(db_url: str) -> ImageStore:
    """The image store a SEARCHCORE_DB_URL names."""
    scheme = urlparse(db_url).scheme if "://" in db_url else ""
    if scheme in ("mysql", "mysql+pymysql", "mariadb"):
        return MySQLImageStore(db_url)
    if scheme in ("", "sqlite", "file"):
        return SQLiteImageStore(db_url)
    raise ConfigError(f"unsupported SEARCHCORE_DB_URL scheme {scheme!r}: use a SQLite path or mysql://...")


def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()


def _redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url
