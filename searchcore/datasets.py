"""Sources: what ingest reads, as one stream of records.

A Chinese-CLIP split or feature file (chinese_clip.py reads those) or a folder of images. A source
never raises for one bad record: the record carries its error instead, so ingest can report it with
its line and keep going.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from .chinese_clip import TSV_SUFFIX, feature_source, find_splits, resolve_split, split_source
from .errors import DatasetError
from .records import Record, Source

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".heic", ".heif", ".avif", ".tif", ".tiff")


def open_source(path: str | Path, split: str | None = None, features: str | Path | None = None) -> Source:
    """Open a dataset split, a feature file or an image folder as a record stream."""
    path = Path(path).expanduser()
    if features is not None:
        return feature_source(Path(features).expanduser(), path if path.is_dir() else None, split)
    if not path.exists():
        raise DatasetError(f"{path} does not exist")
    if path.is_file() and not path.name.endswith(TSV_SUFFIX):
        raise DatasetError(f"{path} is a file; give a dataset folder, a folder of images, or --features FILE")
    if path.is_dir() and not find_splits(path):
        if split is not None:
            raise DatasetError(f"{path} holds no Chinese-CLIP split (no *{TSV_SUFFIX}); drop --split to ingest it "
                               "as a folder of images")
        return _folder_source(path)
    return split_source(*resolve_split(path, split))


def folder_image_id(data: bytes) -> int:
    """A stable 60-bit id from an image file's content, so one file is stored once."""
    return int(hashlib.sha256(data).hexdigest()[:15], 16)


def _folder_source(root: Path) -> Source:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DatasetError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)}) and no Chinese-CLIP split")

    def records() -> Iterator[Record]:
        for number, file in enumerate(files, 1):
            name = str(file.relative_to(root))
            try:
                data = file.read_bytes()
            except OSError as exc:
                yield Record(number, name, error=f"cannot read file ({exc.strerror})")
                continue
            if not data:
                yield Record(number, name, error="file is empty (0 bytes)")
                continue
            yield Record(number, name, folder_image_id(data), data)

    return Source("folder", root, None, len(files), records())
