"""The files table: the files of folder libraries by folder and path, with size, mtime and the image each holds
(`FolderFileStore`), so that a re-scan reads only new and changed files; the folders (roots) they came from."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from searchcore.ids import id_chunks
from searchcore.records import FileState
from searchcore.stores.sql import FILES, ID_BATCH, SqlTables


class RecordedFile(NamedTuple):
    """A folder file that holds an image, as last ingested."""

    root: str
    path: str
    size: int
    mtime_ns: int


class FolderFileStore(Protocol):
    """What a folder's ingest, the folder check and the originals need of a library's recorded files."""

    def files(self, library: str, root: str) -> dict[str, FileState]: ...
    def put_files(self, library: str, root: str, files: dict[str, FileState]) -> None: ...
    def delete_files(self, library: str, root: str, paths: Sequence[str]) -> None: ...
    def file_owners(self, library: str, ids: Sequence[int]) -> dict[int, set[tuple[str, str]]]: ...
    def recorded_files(self, library: str, ids: Sequence[int]) -> dict[int, list[RecordedFile]]: ...
    def roots(self, library: str) -> dict[str, int]: ...
    def move_root(self, library: str, old: str, new: str) -> int: ...


class SqlFolderFiles(SqlTables):
    """`FolderFileStore` in SQL, over the connection it shares with the other tables' parts."""

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


def _file_key(root: str, path: str) -> str:
    """A fixed-size key for (folder, relative path): MySQL cannot index long utf8mb4 paths."""
    return hashlib.sha1(f"{root}\0{path}".encode()).hexdigest()
