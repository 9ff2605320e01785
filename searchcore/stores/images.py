"""The images table: image bytes, ids, captions, paths, dates and OCR text (`ImageStore`).

A dataset or uploaded image is kept whole. A folder picture is kept as a small thumbnail (thumb = 1): its
original stays in its file, which folder_files.py records by folder, path, size and mtime. A video's sampled
frames are images too (video_id, time_s); videos.py records the videos."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from searchcore.config import validate_library
from searchcore.ids import id_chunks
from searchcore.stores.filters import Filters
from searchcore.stores.sql import FILES, ID_BATCH, TABLE, SqlTables


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
    """What search, ingest and the maintenance work need of a library's images."""

    max_blob_bytes: int

    def put_many(self, library: str, images: Sequence[StoredImage]) -> None: ...
    def hashes(self, library: str, ids: Sequence[int]) -> dict[int, str]: ...
    def get_many(self, library: str, ids: Sequence[int]) -> dict[int, StoredImage]: ...
    def get_meta_many(self, library: str, ids: Sequence[int]) -> dict[int, ImageMeta]: ...
    def ids(self, library: str) -> Iterator[int]: ...
    def delete_many(self, library: str, ids: Sequence[int]) -> None: ...
    def set_paths(self, library: str, paths: dict[int, str]) -> None: ...
    def set_texts(self, library: str, texts: dict[int, tuple[str, float]]) -> None: ...
    def has_dates(self, library: str) -> bool: ...
    def dated(self, library: str, filters: Filters, limit: int, newest: bool = True) -> list[int]: ...
    def with_originals(self, library: str, after: int, limit: int) -> list[int]: ...
    def set_thumbnails(self, library: str, thumbnails: dict[int, tuple[bytes, str]]) -> None: ...
    def count(self, library: str) -> int: ...
    def libraries(self) -> dict[str, int]: ...


class SqlImages(SqlTables):
    """`ImageStore` in SQL, over the connection it shares with the other tables' parts."""

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

    def set_paths(self, library: str, paths: dict[int, str]) -> None:
        """Record where moved folder images are now."""
        self._update(library, ("path",), {i: (path,) for i, path in paths.items()})

    def set_texts(self, library: str, texts: dict[int, tuple[str, float]]) -> None:
        """Store the OCR text and its confidence of images."""
        self._update(library, ("ocr_text", "ocr_confidence"), texts)

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

    def libraries(self) -> dict[str, int]:
        """Image counts by library."""
        with self._cursor() as cur:
            cur.execute(f"SELECT library, COUNT(*) FROM {TABLE} GROUP BY library")
            return {r[0]: int(r[1]) for r in cur.fetchall()}
