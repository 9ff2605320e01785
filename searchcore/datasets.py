"""Dataset readers: Chinese-CLIP tsv/jsonl/LMDB splits, feature jsonl files and image folders.

Readers stream records and never raise for one bad record: a record carries
its error instead, so ingest can report it with its line and keep going.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DatasetError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
MAX_ID = (1 << 63) - 1


@dataclass
class Record:
    """One image from a source, or the reason it could not be read."""

    line: int
    file: str
    image_id: int | None = None
    data: bytes | None = None
    error: str | None = None
    captions: list[str] = field(default_factory=list)
    vector: np.ndarray | None = None


@dataclass
class BadRecord:
    """A record ingest skipped, with where it was and why."""

    line: int
    reason: str
    file: str = ""


@dataclass
class Source:
    """A stream of records plus what is known about it up front."""

    kind: str
    path: Path
    split: str | None
    total: int | None
    records: Iterator[Record]
    problems: list[BadRecord] = field(default_factory=list)


def find_splits(root: str | Path) -> list[str]:
    """The splits a Chinese-CLIP dataset folder holds (tsv, LMDB or features)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = {p.name[: -len("_imgs.tsv")] for p in root.glob("*_imgs.tsv")}
    found |= {p.name[: -len("_imgs.img_feat.jsonl")] for p in root.glob("*_imgs.img_feat.jsonl")}
    if (root / "lmdb").is_dir():
        found |= {p.name for p in (root / "lmdb").iterdir() if (p / "imgs").is_dir()}
    return sorted(found)


def open_source(path: str | Path, split: str | None = None, features: str | Path | None = None) -> Source:
    """Open a dataset split, a feature file or an image folder as a record stream."""
    path = Path(path).expanduser()
    if features is not None:
        return _feature_source(Path(features).expanduser(), path if path.is_dir() else None, split)
    if not path.exists():
        raise DatasetError(f"{path} does not exist")
    if path.is_file():
        if path.name.endswith("_imgs.tsv"):
            return open_source(path.parent, path.name[: -len("_imgs.tsv")])
        raise DatasetError(f"{path} is a file; give a dataset folder, a folder of images, or --features FILE")
    splits = find_splits(path)
    if not splits:
        if split is not None:
            raise DatasetError(f"{path} holds no Chinese-CLIP split (no *_imgs.tsv); drop --split to ingest it "
                               "as a folder of images")
        return _folder_source(path)
    if split is None:
        if len(splits) > 1:
            raise DatasetError(f"{path} holds several splits ({', '.join(splits)}); choose one with --split")
        split = splits[0]
    if split not in splits:
        raise DatasetError(f"split {split!r} not found in {path}; found: {', '.join(splits)}")
    captions, problems = read_captions(path, split)
    tsv = path / f"{split}_imgs.tsv"
    lmdb_dir = path / "lmdb" / split / "imgs"
    if tsv.is_file():
        return Source("tsv", path, split, _count_lines(tsv), _tsv_records(tsv, captions), problems)
    if lmdb_dir.is_dir():
        total, records = _lmdb_records(lmdb_dir, captions)
        return Source("lmdb", path, split, total, records, problems)
    return _feature_source(path / f"{split}_imgs.img_feat.jsonl", path, split)


def read_texts(root: Path, split: str) -> tuple[list[dict], list[BadRecord]]:
    """The {split}_texts.jsonl entries, with bad lines reported instead of raised."""
    path = root / f"{split}_texts.jsonl"
    if not path.is_file():
        raise DatasetError(f"{path.name} is missing from {root}: a Chinese-CLIP split pairs "
                           f"{split}_imgs.tsv with {split}_texts.jsonl")
    texts: list[dict] = []
    problems: list[BadRecord] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw.decode("utf-8"))
                if not isinstance(entry, dict):
                    raise ValueError("not a JSON object")
                text_id, text = int(entry["text_id"]), str(entry["text"])
                image_ids = [int(i) for i in entry.get("image_ids", [])]
            except UnicodeDecodeError:
                problems.append(BadRecord(number, "line is not valid UTF-8", path.name))
                continue
            except (ValueError, KeyError, TypeError) as exc:
                problems.append(BadRecord(number, f"not a text entry ({exc})", path.name))
                continue
            texts.append({"text_id": text_id, "text": text, "image_ids": image_ids})
    return texts, problems


def read_captions(root: Path, split: str) -> tuple[dict[int, list[str]], list[BadRecord]]:
    """Captions by image id from {split}_texts.jsonl."""
    texts, problems = read_texts(root, split)
    captions: dict[int, list[str]] = {}
    for entry in texts:
        for image_id in entry["image_ids"]:
            captions.setdefault(image_id, []).append(entry["text"])
    return captions, problems


def folder_image_id(data: bytes) -> int:
    """A stable 60-bit id from an image file's content, so one file is stored once."""
    return int(hashlib.sha256(data).hexdigest()[:15], 16)


def parse_image_id(raw: str | bytes) -> int:
    """An integer image id, or ValueError."""
    value = int(raw.decode() if isinstance(raw, bytes) else raw)
    if not 0 <= value <= MAX_ID:
        raise ValueError(f"image id {value} is out of range")
    return value


_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


def decode_base64(text: bytes) -> bytes:
    """Base64 of an image record, as Chinese-CLIP reads it; ValueError on anything else.

    cn_clip decodes with `base64.urlsafe_b64decode`, which takes the standard and the URL-safe
    alphabets (even mixed) and needs correct padding. This takes exactly those, but strictly: a
    character outside both alphabets is an error here, where cn_clip would silently drop it.
    """
    try:
        return base64.b64decode(text.strip().translate(_URLSAFE_TO_STANDARD), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64 ({exc})") from None


def _tsv_records(path: Path, captions: dict[int, list[str]]) -> Iterator[Record]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            yield _base64_record(number, path.name, *_split_tsv(raw), captions)


def _split_tsv(raw: bytes) -> tuple[bytes | None, bytes]:
    if b"\t" not in raw:
        return None, raw
    key, value = raw.split(b"\t", 1)
    return key, value


def _base64_record(number: int, file: str, key: bytes | None, value: bytes,
                   captions: dict[int, list[str]]) -> Record:
    if key is None:
        return Record(number, file, error="no tab between the image id and the base64 image")
    try:
        image_id = parse_image_id(key)
    except ValueError:
        return Record(number, file, error=f"image id {key[:40]!r} is not an integer")
    try:
        data = decode_base64(value)
    except ValueError as exc:
        return Record(number, file, image_id, error=str(exc))
    return Record(number, file, image_id, data, captions=captions.get(image_id, []))


def _lmdb_records(path: Path, captions: dict[int, list[str]]) -> tuple[int | None, Iterator[Record]]:
    import lmdb

    try:
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=True)
    except lmdb.Error as exc:
        raise DatasetError(f"cannot open LMDB {path}: {exc}") from exc
    with env.begin() as txn:
        raw_total = txn.get(b"num_images")
    total = int(raw_total) if raw_total else None

    def records() -> Iterator[Record]:
        try:
            with env.begin() as txn:
                for number, (key, value) in enumerate(txn.cursor(), 1):
                    if key == b"num_images":
                        continue
                    yield _base64_record(number, f"lmdb/{path.parent.name}/imgs", key, bytes(value), captions)
        finally:
            env.close()

    return total, records()


def _feature_source(path: Path, root: Path | None, split: str | None) -> Source:
    if not path.is_file():
        raise DatasetError(f"feature file {path} does not exist")
    captions: dict[int, list[str]] = {}
    problems: list[BadRecord] = []
    if root is not None and split is not None and (root / f"{split}_texts.jsonl").is_file():
        captions, problems = read_captions(root, split)
    images: Path | None = None
    if split is not None and root is not None and (root / f"{split}_imgs.tsv").is_file():
        images = root / f"{split}_imgs.tsv"
    elif path.name.endswith("_imgs.img_feat.jsonl"):
        candidate = path.with_name(path.name.replace("_imgs.img_feat.jsonl", "_imgs.tsv"))
        images = candidate if candidate.is_file() else None
    return Source("features", path, split, _count_lines(path), _feature_records(path, images, captions), problems)


def _feature_records(path: Path, images: Path | None, captions: dict[int, list[str]]) -> Iterator[Record]:
    """Feature lines, joined with their image bytes from the split's tsv when it exists."""
    image_data = _tsv_index(images) if images is not None else {}
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw.decode("utf-8"))
                image_id = parse_image_id(str(entry["image_id"]))
                vector = np.asarray(entry["feature"], dtype=np.float32)
                if vector.ndim != 1 or not np.isfinite(vector).all():
                    raise ValueError("feature is not a finite vector")
            except UnicodeDecodeError:
                yield Record(number, path.name, error="line is not valid UTF-8")
                continue
            except (ValueError, KeyError, TypeError) as exc:
                yield Record(number, path.name, error=f"not a feature entry ({exc})")
                continue
            data = None
            if images is not None and image_id in image_data:
                offset, tsv_line = image_data[image_id]
                try:
                    data = _read_tsv_image(images, offset)
                except ValueError as exc:  # the feature's own line is the record's; the reason points at the tsv's
                    yield Record(number, path.name, image_id,
                                 error=f"image id {image_id}: line {tsv_line} of {images.name} has {exc}")
                    continue
            yield Record(number, path.name, image_id, data, captions=captions.get(image_id, []), vector=vector)


def _tsv_index(path: Path) -> dict[int, tuple[int, int]]:
    """The byte offset and line number of each image id's line in a tsv file."""
    found: dict[int, tuple[int, int]] = {}
    with path.open("rb") as handle:
        offset = 0
        for number, raw in enumerate(handle, 1):
            key = raw.split(b"\t", 1)[0]
            with contextlib.suppress(ValueError):
                found.setdefault(parse_image_id(key), (offset, number))
            offset += len(raw)
    return found


def _read_tsv_image(path: Path, offset: int) -> bytes:
    """The image bytes of the tsv line at offset; ValueError (from decode_base64) if its base64 is invalid."""
    with path.open("rb") as handle:
        handle.seek(offset)
        _, value = _split_tsv(handle.readline().rstrip(b"\r\n"))
    return decode_base64(value)


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


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for raw in handle if raw.strip())
