"""Search filters: a folder prefix, a date range and a media kind, validated before they reach a Milvus expression.

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
from searchcore.records import naive_seconds, wall_clock

MAX_FOLDER_CHARS = 512
MEDIA = ("image", "video")  # what --media narrows results to ("all", or none, keeps both)


@dataclass(frozen=True)
class Filters:
    """Which images a search may return: under a folder, taken within [since, until), pictures or video frames."""

    folder: str | None = None  # a relative folder, normalised to end in "/"
    since: int | None = None  # Unix seconds (local calendar day at 00:00, as stored), inclusive
    until: int | None = None  # Unix seconds, exclusive: the day after the given until-date
    media: str | None = None  # "image" (pictures only), "video" (video frames only) or None (both)

    @classmethod
    def parse(cls, folder: Any = None, since: Any = None, until: Any = None, media: Any = None) -> Filters:
        """Filters from user values (None or "" means no such filter), or a QueryError saying what is wrong."""
        start = parse_day(since, "since")
        end = parse_day(until, "until")
        if end is not None:
            end += 86400  # until is inclusive: the whole of that day
        if start is not None and end is not None and start >= end:
            raise QueryError("dates_reversed", since=since, until=until)
        return cls(parse_folder(folder), start, end, parse_media(media))

    def __bool__(self) -> bool:
        return self.folder is not None or self.since is not None or self.until is not None or self.media is not None

    def expression(self, media: bool = True) -> str:
        """The Milvus filter expression ("" for none), over the `path`, `taken` and (with media) `video_id`
        fields; the keyword index, which has no `video_id`, asks without media and filters it afterwards."""
        parts = []
        if media and self.media is not None:
            parts.append("video_id == 0" if self.media == "image" else "video_id != 0")
        if self.folder is not None:
            parts.append(f'path >= "{self.folder}" and path < "{self.folder[:-1]}0"')  # "0" follows "/"
        if self.since is not None:
            parts.append(f"taken >= {self.since}")
        if self.until is not None:
            parts.append(f"taken < {self.until}")
        if self.since is not None or self.until is not None:
            parts.append("taken > 0")  # 0: no known time (a dataset image)
        return " and ".join(parts)

    def mask(self, paths: np.ndarray, taken: np.ndarray, videos: np.ndarray | None = None) -> np.ndarray:
        """The rows that pass, for an in-process copy holding the same path, taken and video_id values as Milvus."""
        keep = np.ones(len(taken), dtype=bool)
        if self.media is not None:
            is_frame = videos != 0 if videos is not None else np.zeros(len(taken), dtype=bool)
            keep &= is_frame if self.media == "video" else ~is_frame
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
        return {"folder": self.folder, "since": _day(self.since), "until": _day(self.until, -86400),
                "media": self.media or "all"}


def parse_media(value: Any) -> str | None:
    """"image" or "video"; None for "all", None or "" (both), or a QueryError."""
    if value is None or value == "" or value == "all":
        return None
    if value not in MEDIA:
        raise QueryError("media_invalid", value=str(value)[:40])
    return str(value)


def parse_folder(value: Any) -> str | None:
    """A relative folder prefix such as "2024/旅行", normalised to "2024/旅行/"; None when empty."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise QueryError("folder_not_text")
    folder = value.strip().replace("\\", "/").strip("/")
    if not folder:
        return None
    if len(folder) > MAX_FOLDER_CHARS:
        raise QueryError("folder_too_long", limit=MAX_FOLDER_CHARS)
    bad = sorted({ch for ch in folder if ch == '"' or unicodedata.category(ch).startswith("C")})
    if bad:
        raise QueryError("folder_bad_chars", chars=", ".join(map(repr, bad)))
    parts = folder.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise QueryError("folder_not_relative", value=value)
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
            raise QueryError("since_invalid" if name == "since" else "until_invalid", value=value[:40]) from None
    else:
        raise QueryError("since_invalid" if name == "since" else "until_invalid", value=value)
    return naive_seconds(dt.datetime(day.year, day.month, day.day))


def _day(seconds: int | None, shift: int = 0) -> str | None:
    return None if seconds is None else wall_clock(seconds + shift).date().isoformat()
