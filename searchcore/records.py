"""What a source hands to ingest: records, the records it could not read, and the stream that holds them; what
a folder file was when last ingested; the taken-time rule (a wall-clock time as whole seconds)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from searchcore.errors import RecordError

SHOWN_BAD_RECORDS = 50  # bad records a report lists (CLI and UI) before saying how many more there are
_EPOCH = dt.datetime(1970, 1, 1)


@dataclass
class Record:
    """One image from a source, or the reason it could not be read."""

    line: int
    file: str
    image_id: int | None = None
    data: bytes | None = None
    error: RecordError | None = None
    captions: list[str] = field(default_factory=list)
    vector: np.ndarray | None = None
    stat: FileStat | None = None  # a folder file's path, size and mtime
    sha256: str | None = None  # the digest of data, when the reader has hashed it
    video: bool = False  # a folder's video file: data stays None (it is hashed and sampled from its file)


@dataclass(frozen=True)
class FileStat:
    """A folder file as `stat` saw it: enough to skip it unread next time when none of it changed."""

    path: str  # relative to the folder, with "/" separators
    size: int
    mtime_ns: int


class FileState(NamedTuple):
    """A folder file as last ingested: stat values and the image its content is."""

    size: int
    mtime_ns: int
    image_id: int


@dataclass
class BadRecord:
    """A record ingest skipped, with where it was and why (str() of the reason is its English wording)."""

    line: int
    reason: RecordError
    file: str = ""

    def to_json(self) -> dict[str, Any]:
        """The shape JSON reports give it: the reason as its English wording."""
        return {"line": self.line, "reason": str(self.reason), "file": self.file}


@dataclass
class Source:
    """A stream of records plus what is known about it up front."""

    kind: str
    path: Path
    split: str | None
    total: int | None
    records: Iterator[Record]
    problems: list[BadRecord] = field(default_factory=list)
    scan: FolderScan | None = None  # for a folder: what a stat-only comparison with the last ingest found


@dataclass
class FolderScan:
    """A folder compared with what the image store recorded of it, by path, size and mtime alone."""

    root: str  # the folder's absolute path, as recorded
    found: int = 0  # image files in the folder now
    recorded: int = 0  # files recorded at the last ingest
    unchanged: int = 0  # files skipped unread
    changed: dict[str, int] = field(default_factory=dict)  # recorded paths whose size or mtime differ -> old id
    gone: dict[str, int] = field(default_factory=dict)  # recorded paths no longer there -> their image id


def naive_seconds(moment: dt.datetime) -> int:
    """Seconds since 1970-01-01 of a wall-clock time, with no time zone (EXIF gives none); at least 1."""
    return max(1, int((moment.replace(tzinfo=None) - _EPOCH).total_seconds()))


def wall_clock(seconds: int) -> dt.datetime:
    """The naive wall-clock time that naive_seconds stored as seconds."""
    return _EPOCH + dt.timedelta(seconds=seconds)
