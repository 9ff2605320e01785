"""Folder pictures' originals, which stay in their files: reading one back (checked to be the picture indexed),
comparing a library's files with its folders, and turning originals stored by older versions into thumbnails.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from searchcore.errors import ImageDecodeError, OriginalUnavailableError, VideoUnavailableError
from searchcore.sources.datasets import file_path
from searchcore.sources.imaging import decode_image
from searchcore.stores.folder_files import FolderFileStore
from searchcore.stores.images import ImageStore, StoredImage
from searchcore.stores.videos import StoredVideo

log = logging.getLogger(__name__)
THUMBNAIL_BATCH = 32  # pictures turned into thumbnails per transaction while migrating


def read_original(images: FolderFileStore, library: str, stored: StoredImage) -> StoredImage:
    """The picture with its original bytes: a stored original as it is, or a folder picture read from its file
    after checking it is the content indexed (OriginalUnavailableError when it is gone or changed). A video
    frame's original is its stored picture (the video file is served whole: video_file)."""
    if not stored.thumbnail or stored.video_id:
        return stored
    recorded = images.recorded_files(library, [stored.image_id]).get(stored.image_id, [])
    changed = False
    for file in recorded:
        try:
            data = Path(file_path(file.root), file_path(file.path)).read_bytes()
        except OSError:
            continue
        if hashlib.sha256(data).hexdigest() == stored.sha256:
            try:
                fmt = Image.open(io.BytesIO(data)).format or stored.format
            except (OSError, ValueError):
                fmt = stored.format
            return StoredImage(stored.image_id, data, fmt, stored.width, stored.height, stored.sha256, stored.source,
                               stored.captions, stored.path, stored.taken, stored.text)
        changed = True
    raise OriginalUnavailableError(stored.image_id, recorded[0].path if recorded else stored.path, changed)


def video_file(images: FolderFileStore, library: str, video: StoredVideo) -> Path:
    """A video's file, checked by stat to be the one ingested (its size and mtime as recorded; a video is too
    big to hash on every request): VideoUnavailableError when no file of it is there or each one changed."""
    recorded = images.recorded_files(library, [video.video_id]).get(video.video_id, [])
    changed = False
    for file in recorded:
        path = Path(file_path(file.root), file_path(file.path))
        try:
            info = path.stat()
        except OSError:
            continue
        if (info.st_size, info.st_mtime_ns) == (file.size, file.mtime_ns):
            return path
        changed = True
    raise VideoUnavailableError(video.video_id, recorded[0].path if recorded else video.path, changed)


def whole(images: FolderFileStore, library: str, stored: StoredImage) -> StoredImage:
    """The picture with its original bytes where its file still holds them, else as stored (a thumbnail): what
    OCR and a repair read, so that they see the picture ingest saw whenever it is still there."""
    try:
        return read_original(images, library, stored)
    except OriginalUnavailableError:
        return stored


@dataclass
class FolderCheck:
    """A library's recorded files compared with its folders by stat: what is missing and what changed."""

    missing: list[str] = field(default_factory=list)  # "folder/path" of recorded files not there
    changed: list[str] = field(default_factory=list)  # recorded files whose size or mtime differ
    roots_changed: list[str] = field(default_factory=list)  # folders holding changed files (a re-scan reads them)


def check_folders(images: FolderFileStore, library: str) -> FolderCheck:
    """Stat every recorded file of a library (nothing is read)."""
    found = FolderCheck()
    for root in sorted(images.roots(library)):
        changed_here = False
        for path, state in sorted(images.files(library, root).items()):
            try:
                info = os.stat(os.path.join(file_path(root), file_path(path)))
            except OSError:
                found.missing.append(f"{root}/{path}")
                continue
            if (info.st_size, info.st_mtime_ns) != (state.size, state.mtime_ns):
                found.changed.append(f"{root}/{path}")
                changed_here = True
        if changed_here:
            found.roots_changed.append(root)
    return found


def make_thumbnails(images: ImageStore, library: str, on_batch: Callable[[int], None] | None = None) -> int:
    """Replace the stored originals of folder pictures (a library made before thumbnails) by thumbnails, a batch
    per transaction, so that a run stopped part-way is finished by the next; how many were replaced."""
    done, last = 0, -1
    while True:
        ids = images.with_originals(library, last, THUMBNAIL_BATCH)
        if not ids:
            return done
        thumbnails: dict[int, tuple[bytes, str]] = {}
        for image_id, stored in images.get_many(library, ids).items():
            try:
                small = decode_image(stored.data, thumbnail=True, sha256=stored.sha256)
            except ImageDecodeError as exc:  # kept whole: it still serves, and check can tell the user
                log.warning("library %s: image %d cannot be made a thumbnail (%s); kept as it is", library,
                            image_id, exc)
                continue
            thumbnails[image_id] = (small.data, stored.format)  # the original's format; the bytes are JPEG
        images.set_thumbnails(library, thumbnails)
        done += len(thumbnails)
        last = ids[-1]
        if on_batch is not None:
            on_batch(done)
