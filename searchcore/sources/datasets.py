"""Sources: what ingest reads, as one stream of records.

A Chinese-CLIP split or feature file (chinese_clip.py reads those) or a folder of images. A source
never raises for one bad record: the record carries its error instead, so ingest can report it with
its line and keep going.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path

from searchcore.errors import DatasetError, RecordError
from searchcore.records import FileStat, FileState, FolderScan, Record, Source
from searchcore.sources.chinese_clip import TSV_SUFFIX, feature_source, find_splits, resolve_split, split_source
from searchcore.sources.videos import VIDEO_SUFFIXES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".heic", ".heif", ".avif", ".tif", ".tiff")


HASH_CHUNK = 1 << 20  # a video is hashed a MiB at a time, never read whole

Known = Callable[[str], dict[str, FileState]]  # a folder's absolute path -> its files as last ingested


def is_picture(name: str) -> bool:
    """True for a file name that ingest reads as a picture (by its suffix, in any case)."""
    return name.lower().endswith(IMAGE_SUFFIXES)


def is_video(name: str) -> bool:
    """True for a file name that ingest reads as a video (by its suffix, in any case)."""
    return os.path.splitext(name)[1].lower() in VIDEO_SUFFIXES


def video_id(sha256: str) -> int:
    """A video's id: the same digest rule as a folder picture's, applied to the video file's sha256."""
    return _digest_id(sha256)


def frame_id(video_sha256: str, time_s: float) -> int:
    """A sampled frame's id, from its video's digest and its time to the millisecond."""
    return _digest_id(hashlib.sha256(f"{video_sha256}:{round(time_s * 1000)}".encode()).hexdigest())


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read a chunk at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def open_source(path: str | Path, split: str | None = None, features: str | Path | None = None,
                known: Known | None = None, workers: int = 1) -> Source:
    """Open a dataset split, a feature file or an image folder as a record stream.

    For a folder, known gives what was recorded at the last ingest: a file whose path, size and mtime are
    unchanged is skipped without being read (Source.scan counts it, and lists the changed and gone ones).
    workers > 1 reads a large split's records in that many processes (see chinese_clip.parallel_records)."""
    path = Path(path).expanduser()
    if features is not None:
        return feature_source(Path(features).expanduser(), path if path.is_dir() else None, split)
    if not path.exists():
        raise DatasetError("path_missing", path=path)
    if path.is_file() and not path.name.endswith(TSV_SUFFIX):
        raise DatasetError("dataset_is_file", path=path)
    if path.is_dir() and not find_splits(path):
        if split is not None:
            raise DatasetError("split_given_no_split", path=path, tsv=TSV_SUFFIX)
        return _folder_source(path, known)
    return split_source(*resolve_split(path, split), workers=workers)


def printable_path(path: str) -> str:
    """A file path as it is stored and shown: valid, printable UTF-8 that says exactly which file it is.

    Linux hands Python a name that is not UTF-8 (GBK or Big5 bytes from a Windows zip) with each bad byte as a
    surrogate escape, which no store, JSON or terminal accepts. Such a byte becomes "\\xNN", a control
    character (a newline in a name) "\\xNN" or "\\uNNNN", and a backslash "\\\\"; every other name is
    left as it is. file_path() turns it back."""
    if all(c != "\\" and c.isprintable() for c in path):
        return path
    out = []
    for c in path:
        code = ord(c)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif c == "\\":
            out.append("\\\\")
        elif code < 0x80 and not c.isprintable():
            out.append(f"\\x{code:02x}")
        elif unicodedata.category(c) in UNPRINTABLE:
            out.append(f"\\u{code:04x}")
        else:
            out.append(c)
    return "".join(out)


UNPRINTABLE = ("Cc", "Cs", "Zl", "Zp")  # control characters, stray surrogates, line and paragraph separators
_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4})")


def file_path(printable: str) -> str:
    """The name the file system knows, from printable_path()'s form (bytes it cannot decode as surrogates)."""
    def original(match: re.Match[str]) -> str:
        code = match.group(1)
        if code == "\\":
            return "\\"
        value = int(code[1:], 16)
        return chr(0xDC00 + value) if code[0] == "x" and value >= 0x80 else chr(value)

    return _ESCAPE.sub(original, printable) if "\\" in printable else printable


def folder_image_id(data: bytes) -> int:
    """A stable 60-bit id from an image file's content, so one file is stored once."""
    return _digest_id(hashlib.sha256(data).hexdigest())


def _digest_id(digest: str) -> int:
    return int(digest[:15], 16)


def _folder_source(root: Path, known: Known | None) -> Source:
    root = root.resolve()
    found = scan_folder(root)
    recorded = known(printable_path(str(root))) if known is not None else {}
    if not found and not recorded:
        raise DatasetError("folder_no_images", path=printable_path(str(root)),
                           suffixes=", ".join((*IMAGE_SUFFIXES, *sorted(VIDEO_SUFFIXES))))
    gone = {p: f.image_id for p, f in recorded.items() if p not in found}
    scan = FolderScan(printable_path(str(root)), len(found), len(recorded), gone=gone)
    to_read: list[FileStat] = []
    for stat in found.values():
        before = recorded.get(stat.path)
        if before is not None and (before.size, before.mtime_ns) == (stat.size, stat.mtime_ns):
            scan.unchanged += 1
            continue
        if before is not None:
            scan.changed[stat.path] = before.image_id
        to_read.append(stat)

    def records() -> Iterator[Record]:
        for number, stat in enumerate(to_read, 1):
            if is_video(stat.path):
                yield _video_record(root, number, stat)
                continue
            try:
                data = (root / file_path(stat.path)).read_bytes()
            except OSError as exc:
                yield Record(number, stat.path, error=RecordError("file_unreadable", reason=exc.strerror))
                continue
            if not data:
                yield Record(number, stat.path, error=RecordError("file_empty"))
                continue
            digest = hashlib.sha256(data).hexdigest()
            yield Record(number, stat.path, _digest_id(digest), data, stat=stat, sha256=digest)

    return Source("folder", root, None, len(to_read), records(), scan=scan)


def _video_record(root: Path, number: int, stat: FileStat) -> Record:
    """A video file as a record: hashed (in chunks), not read into memory; ingest samples its frames."""
    if stat.size == 0:
        return Record(number, stat.path, error=RecordError("video_file_empty"))
    try:
        digest = file_sha256(root / file_path(stat.path))
    except OSError as exc:
        return Record(number, stat.path, error=RecordError("file_unreadable", reason=exc.strerror))
    return Record(number, stat.path, video_id(digest), stat=stat, sha256=digest, video=True)


def scan_folder(root: Path) -> dict[str, FileStat]:
    """Every image and video file under a folder by relative path (its printable_path form), from directory entries and
    stat alone (nothing read); hidden files and folders (".thumbnails", "._IMG_1.JPG") are left out."""
    found: dict[str, FileStat] = {}
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # an unreadable or vanished sub-folder: its files count as missing, never as bad
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif (is_picture(entry.name) or is_video(entry.name)) and entry.is_file():
                    info = entry.stat()
                    rel = printable_path(Path(entry.path).relative_to(root).as_posix())
                    found[rel] = FileStat(rel, info.st_size, info.st_mtime_ns)
            except OSError:
                continue
    return dict(sorted(found.items()))
