"""The relational image store: image bytes, ids and captions, in SQLite or MySQL.

A dataset or uploaded image is kept whole. A folder picture is kept as a small thumbnail (thumb = 1): its
original stays in its file, which the files table records by folder, path, size and mtime."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol
from urllib.parse import unquote, urlparse

from searchcore.config import data_path, validate_library
from searchcore.errors import BackendUnavailableError, ConfigError
from searchcore.ids import id_chunks
from searchcore.records import FileState
from searchcore.stores.filters import Filters

log = logging.getLogger(__name__)

TABLE = "searchcore_images"
FILES = "searchcore_files"  # the files of folder libraries: path, size and mtime, for stat-only re-scans
VIDEOS = "searchcore_videos"  # the videos of folder libraries (their frames are rows of TABLE)
STATE = "searchcore_library_state"  # when each library last changed
ID_BATCH = 500
# Columns added after the first release; an older table gains them when a store opens it.
ADDED_COLUMNS = {"path": "TEXT", "taken": "BIGINT", "ocr_text": "TEXT", "ocr_confidence": "REAL",
                 "thumb": "INTEGER", "video_id": "BIGINT", "time_s": "REAL"}


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
    path: str = ""  # a folder image's path relative to its folder; "" for dataset images
    taken: int = 0  # when it was taken: EXIF DateTimeOriginal, else the file's mtime (naive seconds); 0 unknown
    text: str | None = None  # the words OCR read in it; None when OCR has not run on it
    thumbnail: bool = False  # data is a thumbnail; the original is the folder file recorded for it
    video_id: int = 0  # a video frame's video (0 for a picture)
    time_s: float = 0.0  # a video frame's time from the video's start, in seconds


@dataclass(frozen=True)
class StoredVideo:
    """A video of a folder library: its file (which stays where it is), as ingested; its frames are images."""

    video_id: int
    path: str  # relative to its folder
    size: int
    mtime_ns: int
    sha256: str
    duration: float  # seconds
    width: int  # as displayed (upright)
    height: int
    taken: int  # the container's creation time, else the file's mtime (naive seconds)
    frame_interval: float  # seconds between sampled frames


class RecordedFile(NamedTuple):
    """A folder file that holds an image, as last ingested."""

    root: str
    path: str
    size: int
    mtime_ns: int


class ImageMeta(NamedTuple):
    """What the image store knows about one image, without its bytes (a read-only row)."""

    image_id: int
    format: str
    width: int
    height: int
    source: str
    captions: list[str]
    path: str = ""
    taken: int = 0
    text: str | None = None
    video_id: int = 0
    time_s: float = 0.0


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
    def set_paths(self, library: str, paths: dict[int, str]) -> None: ...
    def set_texts(self, library: str, texts: dict[int, tuple[str, float]]) -> None: ...
    def put_videos(self, library: str, videos: Sequence[StoredVideo]) -> None: ...
    def get_videos(self, library: str, ids: Sequence[int]) -> dict[int, StoredVideo]: ...
    def video_frames(self, library: str, video_ids: Sequence[int]) -> dict[int, list[tuple[int, float]]]: ...
    def delete_videos(self, library: str, ids: Sequence[int]) -> None: ...
    def has_videos(self, library: str) -> bool: ...
    def has_dates(self, library: str) -> bool: ...
    def dated(self, library: str, filters: Filters, limit: int, newest: bool = True) -> list[int]: ...
    def video_counts(self, library: str) -> tuple[int, int]: ...
    def files(self, library: str, root: str) -> dict[str, FileState]: ...
    def put_files(self, library: str, root: str, files: dict[str, FileState]) -> None: ...
    def delete_files(self, library: str, root: str, paths: Sequence[str]) -> None: ...
    def file_owners(self, library: str, ids: Sequence[int]) -> dict[int, set[tuple[str, str]]]: ...
    def recorded_files(self, library: str, ids: Sequence[int]) -> dict[int, list[RecordedFile]]: ...
    def roots(self, library: str) -> dict[str, int]: ...
    def move_root(self, library: str, old: str, new: str) -> int: ...
    def with_originals(self, library: str, after: int, limit: int) -> list[int]: ...
    def set_thumbnails(self, library: str, thumbnails: dict[int, tuple[bytes, str]]) -> None: ...
    def compact(self) -> None: ...
    def updated(self, library: str) -> float | None: ...
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
               f" source, captions, path, taken, ocr_text, ocr_confidence, thumb, video_id, time_s)"
               f" VALUES ({', '.join([p] * 16)})")
        rows = [(library, int(i.image_id), i.data, i.format, i.width, i.height, i.sha256, i.source[:1000],
                 json.dumps(i.captions, ensure_ascii=False), i.path, int(i.taken), i.text, None, int(i.thumbnail),
                 int(i.video_id), float(i.time_s)) for i in images]
        with self._cursor() as cur:
            cur.executemany(sql, rows)
            self._touch(cur, library)

    def _update(self, library: str, columns: Sequence[str], rows: Mapping[int, Sequence[Any]]) -> None:
        """Set these columns (names from this module, never from input) of images by id, in one transaction."""
        p = self.placeholder
        assignments = ", ".join(f"{column} = {p}" for column in columns)
        with self._cursor() as cur:
            cur.executemany(f"UPDATE {TABLE} SET {assignments} WHERE library = {p} AND image_id = {p}",
                            [(*values, library, int(i)) for i, values in rows.items()])
            self._touch(cur, library)

    def _touch(self, cur: Any, library: str) -> None:
        cur.execute(f"REPLACE INTO {STATE} (library, updated) VALUES ({self.placeholder}, {self.placeholder})",
                    (library, time.time()))

    def set_paths(self, library: str, paths: dict[int, str]) -> None:
        """Record where moved folder images are now."""
        self._update(library, ("path",), {i: (path,) for i, path in paths.items()})

    def set_texts(self, library: str, texts: dict[int, tuple[str, float]]) -> None:
        """Store the OCR text and its confidence of images."""
        self._update(library, ("ocr_text", "ocr_confidence"), texts)

    def put_videos(self, library: str, videos: Sequence[StoredVideo]) -> None:
        """Record ingested videos (replacing what was recorded for the same ids)."""
        if not videos:
            return
        p = self.placeholder
        sql = (f"REPLACE INTO {VIDEOS} (library, video_id, path, size, mtime_ns, sha256, duration, width, height,"
               f" taken, frame_interval) VALUES ({', '.join([p] * 11)})")
        with self._cursor() as cur:
            cur.executemany(sql, [(library, int(v.video_id), v.path, v.size, v.mtime_ns, v.sha256, v.duration,
                                   v.width, v.height, int(v.taken), v.frame_interval) for v in videos])
            self._touch(cur, library)

    def get_videos(self, library: str, ids: Sequence[int]) -> dict[int, StoredVideo]:
        """Recorded videos by id; ids not recorded are absent."""
        found: dict[int, StoredVideo] = {}
        for chunk in id_chunks(ids, ID_BATCH):
            with self._cursor() as cur:
                cur.execute(f"SELECT video_id, path, size, mtime_ns, sha256, duration, width, height, taken,"
                            f" frame_interval FROM {VIDEOS} WHERE library = {self.placeholder}"
                            f" AND video_id IN ({self._marks(chunk)})", (library, *chunk))
                for r in cur.fetchall():
                    found[int(r[0])] = StoredVideo(int(r[0]), r[1], int(r[2]), int(r[3]), r[4], float(r[5]),
                                                   int(r[6]), int(r[7]), int(r[8]), float(r[9]))
        return found

    def video_frames(self, library: str, video_ids: Sequence[int]) -> dict[int, list[tuple[int, float]]]:
        """Each video's stored frames as (frame id, time in seconds), by time."""
        found: dict[int, list[tuple[int, float]]] = {}
        for chunk in id_chunks(video_ids, ID_BATCH):
            with self._cursor() as cur:
                cur.execute(f"SELECT video_id, image_id, time_s FROM {TABLE} WHERE library = {self.placeholder}"
                            f" AND video_id IN ({self._marks(chunk)})", (library, *chunk))
                for r in cur.fetchall():
                    found.setdefault(int(r[0]), []).append((int(r[1]), float(r[2] or 0.0)))
        return {v: sorted(frames, key=lambda f: f[1]) for v, frames in found.items()}

    def delete_videos(self, library: str, ids: Sequence[int]) -> None:
        """Forget videos by id (their frames are images: delete_many removes those)."""
        for chunk in id_chunks(ids, ID_BATCH):
            with self._cursor() as cur:
                cur.execute(f"DELETE FROM {VIDEOS} WHERE library = {self.placeholder}"
                            f" AND video_id IN ({self._marks(chunk)})", (library, *chunk))
                self._touch(cur, library)

    def has_videos(self, library: str) -> bool:
        """Whether a library holds any video."""
        with self._cursor() as cur:
            cur.execute(f"SELECT 1 FROM {VIDEOS} WHERE library = {self.placeholder} LIMIT 1", (library,))
            return cur.fetchone() is not None

    def has_dates(self, library: str) -> bool:
        """Whether any image of a library has a known date (a folder's pictures do; a dataset's have none)."""
        with self._cursor() as cur:
            cur.execute(f"SELECT 1 FROM {TABLE} WHERE library = {self.placeholder} AND taken > 0 LIMIT 1",
                        (library,))
            return cur.fetchone() is not None

    def dated(self, library: str, filters: Filters, limit: int, newest: bool = True) -> list[int]:
        """The ids of up to limit dated images within the filters (dates, folder, media), newest (or oldest)
        first: what a query of only time words lists."""
        p = self.placeholder
        where, values = [f"library = {p}", "taken > 0"], [library]
        if filters.since is not None:
            where.append(f"taken >= {p}")
            values.append(filters.since)  # type: ignore[arg-type]
        if filters.until is not None:
            where.append(f"taken < {p}")
            values.append(filters.until)  # type: ignore[arg-type]
        if filters.folder is not None:
            where.append(f"path >= {p} AND path < {p}")
            values += [filters.folder, filters.folder[:-1] + "0"]
        if filters.media is not None:
            where.append("COALESCE(video_id, 0) = 0" if filters.media == "image" else "COALESCE(video_id, 0) != 0")
        order = "DESC" if newest else "ASC"
        with self._cursor() as cur:
            cur.execute(f"SELECT image_id FROM {TABLE} WHERE {' AND '.join(where)} ORDER BY taken {order}, image_id"
                        f" LIMIT {int(limit)}", tuple(values))
            return [int(r[0]) for r in cur.fetchall()]

    def video_counts(self, library: str) -> tuple[int, int]:
        """How many videos a library holds, and how many of its images are their sampled frames."""
        p = self.placeholder
        with self._cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {VIDEOS} WHERE library = {p}", (library,))
            videos = int(cur.fetchone()[0])
            if not videos:
                return 0, 0
            cur.execute(f"SELECT COUNT(*) FROM {TABLE} WHERE library = {p} AND video_id <> 0", (library,))
            return videos, int(cur.fetchone()[0])

    def files(self, library: str, root: str) -> dict[str, FileState]:
        """The files of a folder as last ingested, by relative path."""
        p = self.placeholder
        with self._cursor() as cur:
            cur.execute(f"SELECT path, size, mtime_ns, image_id FROM {FILES} WHERE library = {p} AND root = {p}",
                        (library, root))
            return {r[0]: FileState(int(r[1]), int(r[2]), int(r[3])) for r in cur.fetchall()}

    def put_files(self, library: str, root: str, files: dict[str, FileState]) -> None:
        """Record files as ingested (replacing what was recorded for the same paths)."""
        if not files:
            return
        p = self.placeholder
        sql = (f"REPLACE INTO {FILES} (library, file_key, root, path, size, mtime_ns, image_id)"
               f" VALUES ({', '.join([p] * 7)})")
        rows = [(library, _file_key(root, path), root, path, f.size, f.mtime_ns, int(f.image_id))
                for path, f in files.items()]
        with self._cursor() as cur:
            cur.executemany(sql, rows)

    def delete_files(self, library: str, root: str, paths: Sequence[str]) -> None:
        """Forget files that are gone."""
        p = self.placeholder
        with self._cursor() as cur:
            cur.executemany(f"DELETE FROM {FILES} WHERE library = {p} AND file_key = {p}",
                            [(library, _file_key(root, path)) for path in paths])

    def file_owners(self, library: str, ids: Sequence[int]) -> dict[int, set[tuple[str, str]]]:
        """The recorded files (folder, relative path) that hold each of these images."""
        found: dict[int, set[tuple[str, str]]] = {}
        for chunk in id_chunks(ids, ID_BATCH):
            with self._cursor() as cur:
                cur.execute(f"SELECT image_id, root, path FROM {FILES} WHERE library = {self.placeholder}"
                            f" AND image_id IN ({self._marks(chunk)})", (library, *chunk))
                for r in cur.fetchall():
                    found.setdefault(int(r[0]), set()).add((r[1], r[2]))
        return found

    def recorded_files(self, library: str, ids: Sequence[int]) -> dict[int, list[RecordedFile]]:
        """The recorded files that hold each of these images, with their size and mtime as last ingested."""
        found: dict[int, list[RecordedFile]] = {}
        for chunk in id_chunks(ids, ID_BATCH):
            with self._cursor() as cur:
                cur.execute(f"SELECT image_id, root, path, size, mtime_ns FROM {FILES} WHERE library ="
                            f" {self.placeholder} AND image_id IN ({self._marks(chunk)})", (library, *chunk))
                for r in cur.fetchall():
                    found.setdefault(int(r[0]), []).append(RecordedFile(r[1], r[2], int(r[3]), int(r[4])))
        return found

    def roots(self, library: str) -> dict[str, int]:
        """The folders a library's files were ingested from, with how many files each."""
        with self._cursor() as cur:
            cur.execute(f"SELECT root, COUNT(*) FROM {FILES} WHERE library = {self.placeholder} GROUP BY root",
                        (library,))
            return {r[0]: int(r[1]) for r in cur.fetchall()}

    def move_root(self, library: str, old: str, new: str) -> int:
        """Record that a folder's files now live under another folder (one transaction); how many moved."""
        p = self.placeholder
        with self._cursor() as cur:
            cur.execute(f"SELECT path, size, mtime_ns, image_id FROM {FILES} WHERE library = {p} AND root = {p}",
                        (library, old))
            rows = cur.fetchall()
            cur.execute(f"DELETE FROM {FILES} WHERE library = {p} AND root = {p}", (library, old))
            cur.executemany(f"REPLACE INTO {FILES} (library, file_key, root, path, size, mtime_ns, image_id)"
                            f" VALUES ({', '.join([p] * 7)})",
                            [(library, _file_key(new, r[0]), new, r[0], r[1], r[2], r[3]) for r in rows])
            self._touch(cur, library)
        return len(rows)

    def with_originals(self, library: str, after: int, limit: int) -> list[int]:
        """Up to limit ids above `after` of folder pictures still stored whole (made before thumbnails)."""
        p = self.placeholder
        with self._cursor() as cur:
            cur.execute(f"SELECT t.image_id FROM {TABLE} t WHERE t.library = {p} AND t.image_id > {p}"
                        f" AND (t.thumb IS NULL OR t.thumb = 0) AND EXISTS (SELECT 1 FROM {FILES} f"
                        f" WHERE f.library = t.library AND f.image_id = t.image_id) ORDER BY t.image_id LIMIT {p}",
                        (library, after, limit))
            return [int(r[0]) for r in cur.fetchall()]

    def set_thumbnails(self, library: str, thumbnails: dict[int, tuple[bytes, str]]) -> None:
        """Replace stored originals by thumbnails (bytes, format), in one transaction."""
        self._update(library, ("data", "format", "thumb"), {i: (d, f, 1) for i, (d, f) in thumbnails.items()})

    def compact(self) -> None:
        """Give the space of deleted bytes back to the file system."""
        raise NotImplementedError

    def updated(self, library: str) -> float | None:
        """When the library's images last changed (Unix time), or None when never recorded."""
        with self._cursor() as cur:
            cur.execute(f"SELECT updated FROM {STATE} WHERE library = {self.placeholder}", (library,))
            row = cur.fetchone()
        return float(row[0]) if row else None

    def hashes(self, library: str, ids: Sequence[int]) -> dict[int, str]:
        """The content hash of each id that is stored."""
        return {int(r[0]): r[1] for r in self._rows(library, "image_id, sha256", ids)}

    def get_many(self, library: str, ids: Sequence[int]) -> dict[int, StoredImage]:
        """Stored images by id; ids not stored are absent from the result."""
        rows = self._rows(library, "image_id, data, format, width, height, sha256, source, captions, path, taken, "
                                   "ocr_text, thumb, video_id, time_s", ids)
        return {int(r[0]): StoredImage(int(r[0]), bytes(r[1]), r[2], int(r[3]), int(r[4]), r[5], r[6] or "",
                                       json.loads(r[7] or "[]"), r[8] or "", int(r[9] or 0), r[10], bool(r[11]),
                                       int(r[12] or 0), float(r[13] or 0.0))
                for r in rows}

    def get_meta_many(self, library: str, ids: Sequence[int]) -> dict[int, ImageMeta]:
        """Stored images' metadata and captions by id, without reading their bytes; ids not stored are absent."""
        rows = self._rows(library, "image_id, format, width, height, source, captions, path, taken, ocr_text, "
                                   "video_id, time_s", ids)
        return {int(r[0]): ImageMeta(int(r[0]), r[1], int(r[2]), int(r[3]), r[4] or "", json.loads(r[5] or "[]"),
                                     r[6] or "", int(r[7] or 0), r[8], int(r[9] or 0), float(r[10] or 0.0))
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
                self._touch(cur, library)

    def count(self, library: str) -> int:
        """Number of images in a library."""
        with self._cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {TABLE} WHERE library = {self.placeholder}", (library,))
            return int(cur.fetchone()[0])

    def drop(self, library: str) -> None:
        """Remove every image of a library."""
        validate_library(library)
        with self._cursor() as cur:
            for table in (TABLE, FILES, VIDEOS, STATE):
                cur.execute(f"DELETE FROM {table} WHERE library = {self.placeholder}", (library,))

    def libraries(self) -> dict[str, int]:
        """Image counts by library."""
        with self._cursor() as cur:
            cur.execute(f"SELECT library, COUNT(*) FROM {TABLE} GROUP BY library")
            return {r[0]: int(r[1]) for r in cur.fetchall()}

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
        cur.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_video ON {TABLE} (library, video_id)")


def _file_key(root: str, path: str) -> str:
    """A fixed-size key for (folder, relative path): MySQL cannot index long utf8mb4 paths."""
    return hashlib.sha1(f"{root}\0{path}".encode()).hexdigest()


class SQLiteImageStore(_SqlImageStore):
    """The embedded default: one SQLite file, shared by the threads of one process."""

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


class MySQLImageStore(_SqlImageStore):
    """MySQL or MariaDB through pymysql, with a small connection pool."""

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


def open_image_store(db_url: str) -> ImageStore:
    """The image store a SEARCHCORE_DB_URL names."""
    scheme = urlparse(db_url).scheme if "://" in db_url else ""
    if scheme in ("mysql", "mysql+pymysql", "mariadb"):
        return MySQLImageStore(db_url)
    if scheme in ("", "sqlite", "file"):
        return SQLiteImageStore(db_url)
    raise ConfigError("db_url_scheme", scheme=scheme)


def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()


def _redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url
