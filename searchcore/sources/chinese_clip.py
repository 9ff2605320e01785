"""The Chinese-CLIP dataset format: where a split's files are, and how each one is read or written.

A split S of a dataset folder holds its images as S_imgs.tsv (`image_id<TAB>base64` lines) or as
lmdb/S/imgs (LMDB: image id → base64), and its texts as S_texts.jsonl (`{"text_id", "text", "image_ids"}`
lines); cn_clip's extract_features.py writes S_imgs.img_feat.jsonl and S_texts.txt_feat.jsonl
(`{"image_id" or "text_id", "feature"}` lines). Readers never raise for one bad line: the record
carries its reason instead, so ingest can report it with its line and keep going.

Base64 decoding holds the GIL and costs more than anything else the reader does, so a large split is read by
worker processes: the main process hands them chunks of lines (or LMDB entries) a bounded number ahead, they
decode and hash each image once, and the records come back in file order.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import multiprocessing
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from searchcore.errors import DatasetError, RecordError
from searchcore.ids import chunks, ordered_map, parse_image_id
from searchcore.records import BadRecord, Record, Source

TSV_SUFFIX = "_imgs.tsv"
IMAGE_FEATURES_SUFFIX = "_imgs.img_feat.jsonl"
Captions = dict[int, list[str]]
T = TypeVar("T")
PARALLEL_MIN_BYTES = 8 << 20  # a smaller split is read sooner in one process than a pool of them takes to start
CHUNK = 16  # records per task handed to a reader process


# ---- where a split's files are ------------------------------------------------------------------------------------

def tsv_file(root: Path, split: str) -> Path:
    """{split}_imgs.tsv."""
    return root / f"{split}{TSV_SUFFIX}"


def lmdb_dir(root: Path, split: str) -> Path:
    """lmdb/{split}/imgs."""
    return root / "lmdb" / split / "imgs"


def texts_file(root: Path, split: str) -> Path:
    """{split}_texts.jsonl."""
    return root / f"{split}_texts.jsonl"


def image_features_file(root: Path, split: str) -> Path:
    """{split}_imgs.img_feat.jsonl."""
    return root / f"{split}{IMAGE_FEATURES_SUFFIX}"


def text_features_file(root: Path, split: str) -> Path:
    """{split}_texts.txt_feat.jsonl."""
    return root / f"{split}_texts.txt_feat.jsonl"


def find_splits(root: str | Path) -> list[str]:
    """The splits a Chinese-CLIP dataset folder holds (tsv, LMDB or features)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = {p.name[: -len(TSV_SUFFIX)] for p in root.glob(f"*{TSV_SUFFIX}")}
    found |= {p.name[: -len(IMAGE_FEATURES_SUFFIX)] for p in root.glob(f"*{IMAGE_FEATURES_SUFFIX}")}
    if (root / "lmdb").is_dir():
        found |= {p.name for p in (root / "lmdb").iterdir() if (p / "imgs").is_dir()}
    return sorted(found)


def choose_split(root: str | Path, split: str | None) -> str:
    """The split asked for, or the folder's only one; DatasetError naming the splits found otherwise."""
    splits = find_splits(root)
    if split is None:
        if len(splits) == 1:
            return splits[0]
        if splits:
            raise DatasetError("dataset_several_splits", path=root, splits=", ".join(splits))
        raise DatasetError("dataset_no_split", path=root, tsv=TSV_SUFFIX, features=IMAGE_FEATURES_SUFFIX)
    if split not in splits:
        raise DatasetError("split_not_found", split=split, path=root, found=", ".join(splits) or "none")
    return split


def resolve_split(path: Path, split: str | None) -> tuple[Path, str]:
    """The dataset folder and split a path names: a folder (and --split), or one {split}_imgs.tsv file."""
    if path.is_file() and path.name.endswith(TSV_SUFFIX):
        return path.parent, path.name[: -len(TSV_SUFFIX)]
    if not path.is_dir():
        raise DatasetError("dataset_not_recognised", path=path, tsv=TSV_SUFFIX)
    return path, choose_split(path, split)


# ---- a split as a source of records ------------------------------------------------------------------------------

def split_source(root: Path, split: str, workers: int = 1) -> Source:
    """A split's images (tsv, else LMDB, else its feature file) with their captions; workers as in
    parallel_records."""
    captions, problems = read_captions(root, split)
    tsv, lmdb_path = tsv_file(root, split), lmdb_dir(root, split)
    if tsv.is_file():
        return Source("tsv", root, split, count_lines(tsv), tsv_records(tsv, captions, workers), problems)
    if lmdb_path.is_dir():
        total, records = lmdb_records(lmdb_path, captions, workers)
        return Source("lmdb", root, split, total, records, problems)
    return feature_source(image_features_file(root, split), root, split)


def feature_source(path: Path, root: Path | None, split: str | None) -> Source:
    """A feature file's vectors, with their image bytes from the split's tsv and their captions where known."""
    if not path.is_file():
        raise DatasetError("feature_file_missing", path=path)
    captions: Captions = {}
    problems: list[BadRecord] = []
    if root is not None and split is not None and texts_file(root, split).is_file():
        captions, problems = read_captions(root, split)
    images: Path | None = None
    if split is not None and root is not None and tsv_file(root, split).is_file():
        images = tsv_file(root, split)
    elif path.name.endswith(IMAGE_FEATURES_SUFFIX):
        candidate = path.with_name(path.name.replace(IMAGE_FEATURES_SUFFIX, TSV_SUFFIX))
        images = candidate if candidate.is_file() else None
    return Source("features", path, split, count_lines(path), feature_records(path, images, captions), problems)


# ---- texts --------------------------------------------------------------------------------------------------------

def read_texts(root: Path, split: str) -> tuple[list[dict], list[BadRecord]]:
    """The {split}_texts.jsonl entries, with bad lines reported instead of raised."""
    path = texts_file(root, split)
    if not path.is_file():
        raise DatasetError("split_file_missing", name=path.name, path=root, split=split, tsv=TSV_SUFFIX)
    texts: list[dict] = []
    problems: list[BadRecord] = []
    for number, entry, reason in _json_lines(path, _text_entry, _text_invalid):
        if reason is not None:
            problems.append(BadRecord(number, reason, path.name))
        elif entry is not None:
            texts.append(entry)
    return texts, problems


def _text_invalid(reason: str | RecordError) -> RecordError:
    return RecordError("text_entry_invalid", reason=reason)


def _text_entry(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ValueError("not a JSON object")
    return {"text_id": int(entry["text_id"]), "text": str(entry["text"]),
            "image_ids": [int(i) for i in entry.get("image_ids", [])]}


def read_captions(root: Path, split: str) -> tuple[Captions, list[BadRecord]]:
    """Captions by image id from {split}_texts.jsonl."""
    texts, problems = read_texts(root, split)
    captions: Captions = {}
    for entry in texts:
        for image_id in entry["image_ids"]:
            captions.setdefault(image_id, []).append(entry["text"])
    return captions, problems


# ---- image records: tsv lines and LMDB entries -------------------------------------------------------------------

_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


def decode_base64(text: bytes) -> bytes:
    """Base64 of an image record, as Chinese-CLIP reads it; RecordError (base64_invalid) on anything else.

    cn_clip decodes with `base64.urlsafe_b64decode`, which takes the standard and the URL-safe
    alphabets (even mixed) and needs correct padding. This takes exactly those, but strictly: a
    character outside both alphabets is an error here, where cn_clip would silently drop it.
    """
    try:
        return base64.b64decode(text.strip().translate(_URLSAFE_TO_STANDARD), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RecordError("base64_invalid", reason=str(exc)) from None


def image_record(line: int, file: str, key: bytes, value: bytes, captions: Captions) -> Record:
    """An image id and its base64 (a tsv line's two fields, or an LMDB entry) as a Record."""
    try:
        image_id = parse_image_id(key)
    except ValueError:
        return Record(line, file, error=RecordError("image_id_not_integer", key=key[:40].decode("utf-8", "replace")))
    try:
        data = decode_base64(value)
    except RecordError as exc:
        return Record(line, file, image_id, error=RecordError("image_id_bad", image_id=image_id, reason=exc))
    return Record(line, file, image_id, data, captions=captions.get(image_id, []),
                  sha256=hashlib.sha256(data).hexdigest())


def tsv_record(line: int, file: str, raw: bytes, captions: Captions) -> Record:
    """One `image_id<TAB>base64` line as a Record."""
    key, tab, value = raw.rstrip(b"\r\n").partition(b"\t")
    if not tab:
        return Record(line, file, error=RecordError("tsv_no_tab"))
    return image_record(line, file, key, value, captions)


def tsv_records(path: Path, captions: Captions, workers: int = 1, min_bytes: int | None = None) -> Iterator[Record]:
    """Every non-blank line of a tsv file as a Record, numbered from 1; workers as in parallel_records, for a
    file of at least min_bytes."""

    def lines() -> Iterator[tuple[int, bytes, bytes | None]]:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                if raw.strip():
                    yield number, raw, None

    workers = workers if path.stat().st_size >= _min_bytes(min_bytes) else 1
    return parallel_records(lines(), path.name, captions, workers)


def parallel_records(entries: Iterable[tuple[int, bytes, bytes | None]], file: str, captions: Captions,
                     workers: int) -> Iterator[Record]:
    """Records from (line, tsv line, None) or (line, LMDB key, value) entries, in their order.

    With workers > 1 the base64 is decoded and the image hashed in that many processes, at most a few chunks
    per process ahead of the consumer (memory stays bounded); otherwise here. Either way the records, their
    order and their reasons are the same.
    """
    if workers <= 1:
        for record in _parse_chunk(file, entries):
            record.captions = captions.get(record.image_id, []) if record.error is None else []  # type: ignore[arg-type]
            yield record
        return
    # spawn, not fork: the ingest's process already runs OpenVINO's and gRPC's threads.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            tasks = ((file, chunk) for chunk in chunks(entries, CHUNK))
            for _, records in ordered_map(pool, _parse_task, tasks, 2 * workers):
                for record in records:
                    if record.error is None:
                        record.captions = captions.get(record.image_id, [])  # type: ignore[arg-type]
                    yield record
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _min_bytes(asked: int | None) -> int:
    return PARALLEL_MIN_BYTES if asked is None else asked


def _parse_task(task: tuple[str, list[tuple[int, bytes, bytes | None]]]) -> list[Record]:
    return list(_parse_chunk(*task))


def _parse_chunk(file: str, entries: Iterable[tuple[int, bytes, bytes | None]]) -> Iterator[Record]:
    """Entries as Records without captions (a reader process has none; the consumer adds them)."""
    for number, raw, value in entries:
        yield tsv_record(number, file, raw, {}) if value is None else image_record(number, file, raw, value, {})


def lmdb_records(path: Path, captions: Captions, workers: int = 1,
                 min_bytes: int | None = None) -> tuple[int | None, Iterator[Record]]:
    """The image count an LMDB records (if any) and its entries as Records; workers as in parallel_records,
    for a database of at least min_bytes."""
    import lmdb

    try:
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=True)
    except lmdb.Error as exc:
        raise DatasetError("lmdb_unopenable", path=path, reason=str(exc)) from exc
    with env.begin() as txn:
        raw_total = txn.get(b"num_images")
    total = int(raw_total) if raw_total else None

    def entries() -> Iterator[tuple[int, bytes, bytes | None]]:
        try:
            with env.begin() as txn:
                for number, (key, value) in enumerate(txn.cursor(), 1):
                    if key != b"num_images":
                        yield number, bytes(key), bytes(value)
        finally:
            env.close()

    with contextlib.suppress(OSError):
        workers = workers if (path / "data.mdb").stat().st_size >= _min_bytes(min_bytes) else 1
    return total, parallel_records(entries(), f"lmdb/{path.parent.name}/imgs", captions, workers)


# ---- feature files -----------------------------------------------------------------------------------------------

def feature_records(path: Path, images: Path | None, captions: Captions) -> Iterator[Record]:
    """Feature lines, joined with their image bytes from the split's tsv when it exists."""
    image_data = _tsv_index(images) if images is not None else {}
    for number, parsed, reason in _json_lines(path, _feature_entry, _feature_invalid):
        if parsed is None:
            yield Record(number, path.name, error=reason)
            continue
        image_id, vector = parsed
        data = None
        if images is not None and image_id in image_data:
            offset, tsv_line = image_data[image_id]
            try:
                data = _read_tsv_image(images, offset)
            except RecordError as exc:  # the feature's own line is the record's; the reason points at the tsv's
                yield Record(number, path.name, image_id, error=RecordError("tsv_image_bad", image_id=image_id,
                                                                            tsv_line=tsv_line, file=images.name,
                                                                            reason=exc))
                continue
        yield Record(number, path.name, image_id, data, captions=captions.get(image_id, []), vector=vector)


def _feature_entry(entry: Any) -> tuple[int, np.ndarray]:
    image_id = parse_image_id(str(entry["image_id"]))
    vector = np.asarray(entry["feature"], dtype=np.float32)
    if vector.ndim != 1 or not np.isfinite(vector).all():
        raise RecordError("feature_not_finite")
    return image_id, vector


def feature_dim(path: Path) -> int | None:
    """The dimension of the first readable feature in a feature file (None when no line is readable)."""
    for _number, parsed, _reason in _json_lines(path, _feature_entry, _feature_invalid):
        if parsed is not None:
            return len(parsed[1])
    return None


def feature_line(key: str, ident: int, feature: Sequence[float]) -> str:
    """One line of a feature file ("image_id" or "text_id" as key), as cn_clip's extract_features.py writes it."""
    return json.dumps({key: ident, "feature": feature}) + "\n"


def _feature_invalid(reason: str | RecordError) -> RecordError:
    return RecordError("feature_entry_invalid", reason=reason)


def _json_lines(path: Path, parse: Callable[[Any], T], invalid: Callable[[str | RecordError], RecordError]
                ) -> Iterator[tuple[int, T | None, RecordError | None]]:
    """(line number, parsed entry, None) for each non-blank line of a jsonl file, or (number, None, reason); the
    reason for a line parse refuses is invalid(why)."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                parsed = parse(json.loads(raw.decode("utf-8")))
            except UnicodeDecodeError:
                yield number, None, RecordError("line_not_utf8")
                continue
            except RecordError as exc:
                yield number, None, invalid(exc)
                continue
            except (ValueError, KeyError, TypeError) as exc:
                yield number, None, invalid(str(exc))
                continue
            yield number, parsed, None


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
    """The image bytes of the tsv line at offset; RecordError (from decode_base64) if its base64 is invalid."""
    with path.open("rb") as handle:
        handle.seek(offset)
        value = handle.readline().rstrip(b"\r\n").split(b"\t", 1)[-1]
    return decode_base64(value)


def count_lines(path: Path) -> int:
    """The non-blank lines of a file."""
    with path.open("rb") as handle:
        return sum(1 for raw in handle if raw.strip())
