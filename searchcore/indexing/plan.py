"""Ingest's first stage: decide, per record, whether it is bad, already present, or work for the later stages.

Ids are looked up in chunks of LOOKUP_CHUNK: already in both stores → present (for a folder: unchanged, moved
or a copy, see folder_book.py); image stored but no vector → its vector only; a different image under a stored
id → bad; else both writes. Nothing is read from the records' images here but their digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from searchcore.errors import RecordError
from searchcore.ids import chunks
from searchcore.records import BadRecord, Record
from searchcore.stores.image_db import ImageDb
from searchcore.stores.images import StoredImage
from searchcore.stores.vectors import VectorStore

if TYPE_CHECKING:
    from searchcore.indexing.folder_book import FolderBook
    from searchcore.indexing.report import IngestReport
    from searchcore.indexing.videos import SampledFrame

LOOKUP_CHUNK = 256


@dataclass
class Work:
    """One record the later stages read, encode and write: a picture, or one sampled frame of a video."""

    record: Record
    sha256: str
    store_image: bool  # False: the image store holds it already, only its vector is missing
    stored: StoredImage | None = None  # the image as it will be stored, once read
    changed: bool = False  # a known file with new content, not a new file
    picture: Any = None  # the decoded picture, kept for OCR only
    frame: SampledFrame | None = None  # a video's sampled frame (record is the video's)

    @property
    def unit(self) -> bool:
        """Whether writing this item completes a file: a picture, or a video's last frame (a video is one file)."""
        return self.frame is None or (self.frame.last and self.frame.job.error is None)


def plan(records: Iterator[Record], vectors: VectorStore, images: ImageDb, library: str,
         report: IngestReport, tick: Callable[[int], None], book: FolderBook | None = None) -> Iterator[Work]:
    """The records that need writing, as Work; the bad and the present go into the report (tick counts each)."""
    seen: dict[int, tuple[bytes, int]] = {}
    pending: list[Record] = []
    for chunk in chunks(records, LOOKUP_CHUNK):
        candidates: list[tuple[Record, str]] = []
        for record in chunk:
            if record.error is not None or record.image_id is None:
                reason = record.error if record.error is not None else RecordError("record_no_image_id")
                report.bad.append(BadRecord(record.line, reason, record.file))
                tick(1)
                continue
            if record.data is None and not record.video:
                report.bad.append(BadRecord(record.line, RecordError("record_no_image_data",
                                                                     image_id=record.image_id), record.file))
                tick(1)
                continue
            sha = record.sha256 or hashlib.sha256(record.data or b"").hexdigest()
            first = seen.get(record.image_id)
            if first is not None:
                if first[0] != bytes.fromhex(sha[:16]):
                    report.bad.append(BadRecord(record.line, RecordError(
                        "record_duplicate_id", image_id=record.image_id, first_line=first[1]), record.file))
                elif book is not None:
                    pending.append(record)  # a copy of a file in this run: recorded once that one is written
                else:
                    report.present += 1
                tick(1)
                continue
            seen[record.image_id] = (bytes.fromhex(sha[:16]), record.line)
            candidates.append((record, sha))
        yield from _looked_up(candidates, vectors, images, library, report, tick, book)
    if book is not None:
        book.copies = pending


def _looked_up(candidates: list[tuple[Record, str]], vectors: VectorStore, images: ImageDb, library: str,
               report: IngestReport, tick: Callable[[int], None], book: FolderBook | None) -> Iterator[Work]:
    """One chunk's records, each decided by what the stores hold under its id."""
    ids = [r.image_id for r, _ in candidates if not r.video]
    stored = images.hashes(library, ids)  # type: ignore[arg-type]
    with_vector = vectors.existing(library, [i for i in ids if i in stored])  # type: ignore[misc]
    # a video is present once recorded (after its last frame was written)
    video_ids = [r.image_id for r, _ in candidates if r.video and r.image_id is not None]
    videos = {i: v.sha256 for i, v in images.get_videos(library, video_ids).items()}
    stored.update(videos)
    with_vector.update(videos)
    for record, sha in candidates:
        image_id = record.image_id
        assert image_id is not None
        if image_id in stored and stored[image_id] != sha:
            report.bad.append(BadRecord(record.line, RecordError("record_id_stored_differently", image_id=image_id),
                                        record.file))
            tick(1)
        elif image_id in with_vector:
            if book is not None:
                book.present(record)
            else:
                report.present += 1
            tick(1)
        else:
            changed = book is not None and record.stat is not None and record.stat.path in book.scan.changed
            yield Work(record, sha, store_image=image_id not in stored, changed=changed)
