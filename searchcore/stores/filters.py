"""Search filters: a folder prefix and a date range, validated before they reach a Milvus expression.

A filter is built from parsed values only: the folder is checked character by character and the dates
become whole numbers, so no text a user typed is ever pasted into an expression. The folder prefix is
matched as a string range (path >= "a/b/" and path < "a/b0"), which needs no LIKE wildcards to escape.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np

from searchcore.errors import QueryError

MAX_FOLDER_CHARS = 512
_EPOCH = dt.datetime(1970, 1, 1)


@dataclass(frozen=True)
class Filters:
    """Which images a search may return: under a folder, and taken within [since, until)."""

    folder: str | None = None  # a relative folder, normalised to end in "/"
    since: int | None = None  # Unix seconds (local calendar day at 00:00, as stored), inclusive
    until: int | None = None  # Unix seconds, exclusive: the day after the given until-date

    @classmethod
    def parse(cls, folder: Any = None, since: Any = None, until: Any = None) -> Filters:
        """Filters from user values (None or "" means no such filter), or a QueryError saying what is wrong."""
        start = parse_day(since, "since")
        end = parse_day(until, "until")
        if end is not None:
            end += 86400  # until is inclusive: the whole of that day
        if start is not None and end is not None and start >= end:
            raise QueryError(f"since ({since}) is after until ({until})")
        return cls(parse_folder(folder), start, end)

    def __bool__(self) -> bool:
        return self.folder is not None or self.since is not None or self.until is not None

    def expression(self) -> str:
        """The Milvus filter expression ("" for none), over the `path` and `taken` fields."""
        parts = []
        if self.folder is not None:
            parts.append(f'path >= "{self.folder}" and path < "{self.folder[:-1]}0"')  # "0" follows "/"
        if self.since is not None:
            parts.append(f"taken >= {self.since}")
        if self.until is not None:
            parts.append(f"taken < {self.until}")
        if self.since is not None or self.until is not None:
            parts.append("taken > 0")  # 0: no known time (a dataset image)
        return " and ".join(parts)

    def mask(self, paths: np.ndarray, taken: np.ndarray) -> np.ndarray:
        """The rows that pass, for an in-process copy holding the same path and taken values as Milvus."""
        keep = np.ones(len(taken), dtype=bool)
        if self.folder is not None:
            keep &= np.fromiter((p.startswith(self.folder) for p in paths), dtype=bool, count=len(paths))
        if self.since is not None:
            keep &= taken >= self.since
        if self.until is not None:
            keep &= taken < self.until
        if self.since is not None or self.until is not None:
            keep &= taken > 0
        return keep

    def to_json(self) -> dict[str, Any]:
        """The filters as given back to a caller (dates as YYYY-MM-DD)."""
        return {"folder": self.folder, "since": _day(self.since), "until": _day(self.until, -86400)}


def parse_folder(value: Any) -> str | None:
    """A relative folder prefix such as "2024/旅行", normalised to "2024/旅行/"; None when empty."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise QueryError("folder must be text, e.g. 2024/旅行")
    folder = value.strip().replace("\\", "/").strip("/")
    if not folder:
        return None
    if len(folder) > MAX_FOLDER_CHARS:
        raise QueryError(f"folder is longer than {MAX_FOLDER_CHARS} characters")
    bad = sorted({ch for ch in folder if ch == '"' or unicodedata.category(ch).startswith("C")})
    if bad:
        raise QueryError(f"folder contains characters a path cannot hold here: {', '.join(map(repr, bad))}")
    parts = folder.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise QueryError(f"folder must be a relative path inside the library's folder, got {value!r}")
    return "/".join(parts) + "/"


def parse_day(value: Any, name: str) -> int | None:
    """A YYYY-MM-DD date as Unix seconds at 00:00 of that day (naive, as EXIF times are); None when empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, dt.datetime):
        day = value.date()
    elif isinstance(value, dt.date):
        day = value
    elif isinstance(value, str):
        try:
            day = dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            raise QueryError(f"{name} must be a date as YYYY-MM-DD, got {value[:40]!r}") from None
    else:
        raise QueryError(f"{name} must be a date as YYYY-MM-DD, got {value!r}")
    return naive_seconds(dt.datetime(day.year, day.month, day.day))


def naive_seconds(moment: dt.datetime) -> int:
    """Seconds since 1970-01-01 of a wall-clock time, with no time zone (EXIF gives none); at least 1."""
    return max(1, int((moment.replace(tzinfo=None) - _EPOCH).total_seconds()))


def wall_clock(seconds: int) -> dt.datetime:
    """The naive wall-clock time that naive_seconds stored as seconds."""
    return _EPOCH + dt.timedelta(seconds=seconds)


def _day(seconds: int | None, shift: int = 0) -> str | None:
    return None if seconds is None else wall_clock(seconds + shift).date().isoformat()
