"""Ingest's second stage: each planned item read, decoded and preprocessed, in batches, in order.

A video's item becomes its sampled frames here (indexing/videos.py); a picture or a frame that cannot be read
is reported bad (a video once, however many of its frames fail) and left out. Each item comes out holding the
image as it will be stored (a folder's: its thumbnail) beside the encoder's input for its batch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from searchcore.errors import RecordError
from searchcore.indexing.pipeline import Prepared, prepared_batches
from searchcore.indexing.plan import Work
from searchcore.indexing.videos import VideoJob, frame_image, sampled_ahead
from searchcore.models.encoder import Encoder
from searchcore.records import BadRecord, naive_seconds
from searchcore.stores.image_db import ImageDb
from searchcore.stores.images import StoredImage
from searchcore.stores.text_index import TextIndex
from searchcore.stores.vectors import VectorStore

if TYPE_CHECKING:
    from searchcore.indexing.folder_book import FolderBook
    from searchcore.indexing.report import IngestReport
    from searchcore.sources.imaging import DecodedImage


class Videos:
    """A run's videos: each video's work item becomes its sampled frames; a video that fails part-way is reported
    once, and the frames of it already written are removed at the end."""

    def __init__(self, book: FolderBook | None, interval: float, supported: bool, library: str, report: IngestReport,
                 tick: Callable[[int], None]) -> None:
        self.book, self.interval, self.supported = book, interval, supported
        self.library, self.report, self.tick = library, report, tick
        self.failed: list[VideoJob] = []

    def expand(self, work: Iterator[Work]) -> Iterator[Work]:
        """Pictures as they come; each video as its frames, sampled as the pipeline takes them."""
        for item in work:
            if not item.record.video:
                yield item
                continue
            if self.book is None or not self.supported:
                reason = (RecordError("record_video_needs_migrate", library=self.library) if self.book is not None
                          else RecordError("record_video_not_in_folder"))
                self.report.bad.append(BadRecord(item.record.line, reason, item.record.file))
                self.tick(1)
                continue
            job = VideoJob(item.record, item.sha256, self.interval, self.book.scan.root, item.changed)
            for frame in sampled_ahead(job):
                yield Work(item.record, item.sha256, True, changed=item.changed, frame=frame)
            if job.error is not None:
                self.fail(job, job.error)

    def reject(self, item: Work, reason: RecordError) -> None:
        """Report an item that could not be read: a picture on its own, a frame as its video (once)."""
        if item.frame is not None:
            self.fail(item.frame.job, reason)
            return
        self.report.bad.append(BadRecord(item.record.line, reason, item.record.file))
        self.tick(1)

    def fail(self, job: VideoJob, reason: RecordError) -> None:
        """Report a video bad (once), whatever failed: its file or one of its frames."""
        if job in self.failed:
            return
        job.error = job.error or reason
        self.failed.append(job)
        self.report.bad.append(BadRecord(job.record.line, reason, job.record.file))
        self.tick(1)

    def remove_failed(self, vectors: VectorStore, images: ImageDb, texts: TextIndex | None) -> None:
        """Remove from every store the frames written of videos that failed part-way (vectors first)."""
        ids = [i for job in self.failed for i in job.frame_ids]
        self.report.frames -= sum(job.written for job in self.failed)
        if not ids:
            return
        vectors.delete(self.library, ids)
        if texts is not None:
            texts.delete(self.library, ids)
        images.delete_many(self.library, ids)


def read(work: Iterator[Work], encoder: Encoder | None, images: ImageDb, videos: Videos, *, folder: bool,
         batch_size: int = 8, workers: int = 0, keep_pictures: bool = False) -> Iterator[tuple[list[Work], Any]]:
    """Batches of items ready to store, each beside its encoder input (with no encoder, a feature file's: none).

    A folder's originals stay in their files: the store keeps a thumbnail, whatever the original's size.
    keep_pictures keeps each decoded picture for OCR (which reads it on the CPU, so nothing decodes on the GPU).
    """
    prepared = prepared_batches(videos.expand(work), _data, encoder, on_bad=videos.reject,
                                batch_size=batch_size, workers=workers,
                                max_bytes=None if folder else images.max_blob_bytes, thumbnails=folder,
                                digest=_digest, picture=_frame_picture, device_decode=not keep_pictures)
    for batch, pixels in prepared:
        yield [to_store(p, keep_picture=keep_pictures, thumbnail=folder) for p in batch], pixels


def _data(item: Work) -> bytes:
    return item.record.data or b""


def _digest(item: Work) -> str | None:
    return item.sha256


def _frame_picture(item: Work) -> DecodedImage | None:
    return frame_image(item.frame) if item.frame is not None else None


def to_store(prepared: Prepared[Work], keep_picture: bool = False, thumbnail: bool = False) -> Work:
    """The decoded image as it will be stored (its thumbnail, for a folder's); the raw bytes are freed early."""
    work, decoded, record = prepared.item, prepared.decoded, prepared.item.record
    if keep_picture:
        work.picture = decoded.image
    assert record.image_id is not None
    path, taken = "", decoded.taken
    if record.stat is not None:
        path = record.stat.path
        taken = taken or naive_seconds(dt.datetime.fromtimestamp(record.stat.mtime_ns / 1e9))
    source = path or f"{record.file}:{record.line}"
    if work.frame is not None:
        frame = work.frame
        work.stored = StoredImage(frame.image_id, decoded.data, decoded.format, decoded.width, decoded.height,
                                  decoded.sha256, source, [], path, frame.job.taken, thumbnail=True,
                                  video_id=frame.job.video_id, time_s=frame.time)
        frame.picture = None
        return work
    work.stored = StoredImage(record.image_id, decoded.data, decoded.format, decoded.width, decoded.height,
                              work.sha256, source, record.captions, path, taken, thumbnail=thumbnail)
    record.data = None
    return work
