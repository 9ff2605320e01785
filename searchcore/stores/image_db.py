"""The image database: one object over one connection (SQLite or MySQL) that is a library's `ImageStore`,
`VideoStore` and `FolderFileStore` at once, and what `SEARCHCORE_DB_URL` opens."""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlparse

from searchcore.errors import ConfigError
from searchcore.stores.folder_files import FolderFileStore, SqlFolderFiles
from searchcore.stores.images import ImageStore, SqlImages
from searchcore.stores.sql import MySQLDatabase, SQLiteDatabase
from searchcore.stores.videos import SqlVideos, VideoStore


class ImageDb(ImageStore, VideoStore, FolderFileStore, Protocol):
    """The three stores over one connection, with what belongs to the whole database."""

    backend: str

    def updated(self, library: str) -> float | None: ...
    def drop(self, library: str) -> None: ...
    def compact(self) -> None: ...
    def close(self) -> None: ...


class SQLiteImageStore(SqlImages, SqlVideos, SqlFolderFiles, SQLiteDatabase):
    """The embedded default: one SQLite file, shared by the threads of one process."""


class MySQLImageStore(SqlImages, SqlVideos, SqlFolderFiles, MySQLDatabase):
    """MySQL or MariaDB through pymysql, with a small connection pool."""


def open_image_store(db_url: str) -> ImageDb:
    """The image database a SEARCHCORE_DB_URL names."""
    scheme = urlparse(db_url).scheme if "://" in db_url else ""
    if scheme in ("mysql", "mysql+pymysql", "mariadb"):
        return MySQLImageStore(db_url)
    if scheme in ("", "sqlite", "file"):
        return SQLiteImageStore(db_url)
    raise ConfigError("db_url_scheme", scheme=scheme)
