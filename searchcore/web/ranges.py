"""A file served with HTTP Range requests (RFC 9110, section 14), so that a browser's <video> can seek.

A browser asks for "bytes=0-" first, then for the bytes at whatever time the user (or a `#t=` fragment) seeks
to. One range is answered with 206 and Content-Range; a request for several ranges gets the first of them (a
206 that carries fewer ranges than asked for is allowed, and players never ask for more than one). A range
past the end of the file, a backwards one, or one that does not parse is 416 with `Content-Range: bytes */SIZE`;
a Range in a unit other than bytes is ignored (the whole file, as the RFC says). If-Range with a stale
validator gets the whole file, so a player never splices bytes of two versions of a file.
"""

from __future__ import annotations

import email.utils
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fastapi.responses import Response, StreamingResponse

from searchcore.errors import QueryError

CHUNK = 256 * 1024
_SPEC = re.compile(r"^([0-9]*)-([0-9]*)$")
# What a browser is told each file is; anything else is sent as bytes (the player still tries it).
VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
               ".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".3gp": "video/3gpp", ".ts": "video/mp2t",
               ".mts": "video/mp2t", ".m2ts": "video/mp2t", ".mpg": "video/mpeg", ".mpeg": "video/mpeg",
               ".wmv": "video/x-ms-wmv", ".flv": "video/x-flv", ".ogv": "video/ogg"}


@dataclass(frozen=True)
class ByteRange:
    """Bytes [start, stop) of a file of `size` bytes."""

    start: int
    stop: int
    size: int

    def content_range(self) -> str:
        return f"bytes {self.start}-{self.stop - 1}/{self.size}"


def byte_range(header: str | None, size: int) -> ByteRange | None:
    """The range a Range header asks for in a file of `size` bytes; None for the whole file (no header, or a
    unit other than bytes); QueryError("range_unsatisfiable") when it does not parse or starts past the end."""
    if not header or not header.strip():
        return None
    unit, equals, specs = header.strip().partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    asked = []
    for spec in specs.split(","):
        found = _SPEC.match(spec.strip())
        first, last = found.groups() if found else ("", "")
        if (first == last == "") or (first and last and int(last) < int(first)):
            break  # one range that does not parse, or runs backwards, makes the whole header invalid
        asked.append((first, last))
    else:
        for first, last in asked:
            if first == "":  # a suffix: the last N bytes
                if int(last) > 0 and size > 0:
                    return ByteRange(max(0, size - int(last)), size, size)
            elif int(first) < size:
                return ByteRange(int(first), size if last == "" else min(int(last) + 1, size), size)
    raise QueryError("range_unsatisfiable", range=header.strip()[:100], size=size)


def serve_file(path: Path, media_type: str, headers: Mapping[str, str], *, head: bool = False) -> Response:
    """The file, whole (200) or the range the request's headers ask for (206), streamed in chunks; with head,
    the same status and headers without the body. A QueryError("range_unsatisfiable") for a bad range (416)."""
    handle = path.open("rb")
    try:
        stat = os.fstat(handle.fileno())
        validator = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
        modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
        asked = headers.get("range")
        if_range = headers.get("if-range")
        if if_range is not None and if_range.strip() not in (validator, modified):
            asked = None  # the file is not the one the client has the other bytes of
        wanted = byte_range(asked, stat.st_size)
    except BaseException:
        handle.close()
        raise
    start, stop = (wanted.start, wanted.stop) if wanted else (0, stat.st_size)
    sent = {"Accept-Ranges": "bytes", "Content-Length": str(stop - start), "ETag": validator,
            "Last-Modified": modified, "X-Content-Type-Options": "nosniff"}
    if wanted:
        sent["Content-Range"] = wanted.content_range()
    status = 206 if wanted else 200
    if head:
        handle.close()
        return Response(b"", status_code=status, media_type=media_type, headers=sent)
    return StreamingResponse(_chunks(handle, start, stop), status_code=status, media_type=media_type,
                             headers=sent)


def video_type(path: Path) -> str:
    """The Content-Type of a video file, by its suffix."""
    return VIDEO_TYPES.get(path.suffix.lower(), "application/octet-stream")


def _chunks(handle: BinaryIO, start: int, stop: int) -> Iterator[bytes]:
    """Bytes [start, stop) of an open file, CHUNK at a time; closes the file when done or dropped."""
    try:
        handle.seek(start)
        left = stop - start
        while left > 0:
            data = handle.read(min(CHUNK, left))
            if not data:  # the file shrank since it was opened: what is left is not there to send
                return
            left -= len(data)
            yield data
    finally:
        handle.close()
