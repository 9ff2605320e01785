"""The streaming ingest pipeline: read → decode → encode → store (images before vectors).

Memory stays bounded whatever the split size: records are read (base64 and hashing in reader processes for a
large split), looked up in chunks, decoded in a thread pool with a bounded look-ahead, encoded in batches, and
written batch by batch on a writer thread of their own, at most WRITES_AHEAD batches behind the encoder, in
order. A re-run skips what both stores hold, and re-encodes anything whose vector is missing, so an
interrupted ingest completes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from searchcore.errors import MassRemovalError
from searchcore.ids import chunks
from searchcore.indexing.pipeline import Prepared, prepared_batches
from searchcore.indexing.videos import NEEDS_MIGRATE, SampledFrame, VideoJob, frame_image, sampled_ahead
from searchcore.models.encoder import Encoder
from searchcore.models.preprocess import normalise
from searchcore.records import BadRecord, FileState, FolderScan, Record, Source, naive_seconds
from searchcore.sources.videos import DEFAULT_INTERVAL
from searchcore.stores.images import ImageStore, StoredImage, StoredVideo
from searchcore.stores.text_index import TextIndex, image_text
from searchcore.stores.vectors import NO_ATTRS, NO_FRAME, VectorStore

if TYPE_CHECKING:
    from searchcore.models.ocr import OcrReader, OcrText

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

Progress = Callable[[int, "int | None"], None]
LOOKUP_CHUNK = 256
# A sync run refuses, unless told otherwise, to remove more than this share of a folder's recorded files at
# once, and always refuses to remove all of them: that is what an unmounted drive or a wrong folder looks like.
MASS_REMOVAL_SHARE = 0.5
OCR_AHEAD = 8  # batches OCR may fall behind the encoder before the ingest waits for it (bounds the memory)
WRITES_AHEAD = 2  # batches the writer may fall behind the encoder before the ingest waits for it


@dataclass
class IngestReport:
    """What an ingest did: added, already present, and every bad record with its reason; for a folder also
    what a re-scan found: files changed, unchanged (skipped unread), moved, removed (--sync) and missing."""

    library: str
    added: int = 0
    present: int = 0
    bad: list[BadRecord] = field(default_factory=list)
    seconds: float = 0.0
    folder: bool = False
    changed: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    missing: int = 0
    videos: int = 0  # videos added or changed (each counted once in added or changed too)
    frames: int = 0  # their sampled frames, now searchable

    def summary(self) -> str:
        """One line: "library L: N added, M already present, K bad (T s)", with a folder's re-scan counts."""
        if not self.folder:
            return (f"library {self.library}: {self.added} added, {self.present} already present, "
                    f"{len(self.bad)} bad ({self.seconds:.1f}s)")
        line = (f"library {self.library}: {self.added} added, {self.changed} changed, {self.unchanged} unchanged, "
                f"{self.moved} moved, {self.removed} removed, {len(self.bad)} bad")
        if self.videos:
            line += f" ({self.videos} videos: {self.frames} frames)"
        if self.present:
            line += f", {self.present} copies of images already stored"
        if self.missing:
            line += f"; {self.missing} files missing from the folder (kept; --sync removes them)"
        return f"{line} ({self.seconds:.1f}s)"

    def to_json(self) -> dict[str, Any]:
        """The CLI's --json shape."""
        data: dict[str, Any] = {"library": self.library, "added": self.added, "present": self.present,
                                "bad": [asdict(b) for b in self.bad], "seconds": round(self.seconds, 3)}
        if self.folder:
            data.update(changed=self.changed, unchanged=self.unchanged, moved=self.moved, removed=self.removed,
                        missing=self.missing, videos=self.videos, frames=self.frames)
        return data


@dataclass
class _Work:
    record: Record
    sha256: str
    store_image: bool
    stored: StoredImage | None = None
    changed: bool = False  # a known file with new content, not a new file
    picture: Any = None  # the decoded picture, kept for OCR only
    frame: SampledFrame | None = None  # a video's sampled frame (record is the video's)

    @property
    def unit(self) -> bool:
        """Whether writing this item completes a file: a picture, or a video's last frame (a video is one file)."""
        return self.frame is None or (self.frame.last and self.frame.job.error is None)


def ingest(source: Source, encoder: Encoder, vectors: VectorStore, images: ImageStore, library: str, *,
           batch_size: int = 8, workers: int = 0, progress: Progress | None = None,
           flush: bool = True, sync: bool = False, texts: TextIndex | None = None,
           ocr: OcrReader | None = None, allow_mass_removal: bool = False,
           removal_share: float = MASS_REMOVAL_SHARE, frame_interval: float = DEFAULT_INTERVAL) -> IngestReport:
    """Ingest every record of a source into a library; bad records are reported and skipped.

    For a folder, files unchanged since the last ingest are skipped unread; with sync, images whose files are
    gone are removed from both stores. A sync that would remove all of the folder's files, or more than
    removal_share of them, raises MassRemovalError and removes nothing, unless allow_mass_removal.
    flush=False leaves the final flush to the caller (Ray's driver flushes once for all its workers). With
    texts, captions (and with ocr, the words read in each picture, on a thread of their own beside the
    encoder) go into the library's keyword index. A folder's videos are sampled every frame_interval seconds,
    each frame one image of the library (see indexing/videos.py).
    """
    started = time.perf_counter()
    meta = vectors.open_library(library, encoder.name, encoder.dim, create=True, model_file=encoder.spec.source,
                                digest=encoder.spec.digest)
    report = IngestReport(library, bad=list(source.problems), folder=source.scan is not None)
    book = _Folder(source.scan, vectors, images, library, report, texts) if source.scan is not None else None
    done = 0

    def tick(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, source.total)

    videos = _Videos(book, frame_interval, meta.videos, library, report, tick)
    work = videos.expand(_plan(source.records, vectors, images, library, report, tick, book))

    def bad(item: _Work, reason: str) -> None:
        if item.frame is not None:
            videos.fail(item.frame.job, reason)
            return
        report.bad.append(BadRecord(item.record.line, reason, item.record.file))
        tick(1)

    features = source.kind == "features"
    # A folder's originals stay in their files: the store keeps a thumbnail, whatever the original's size.
    folder = source.scan is not None
    prepared = prepared_batches(work, lambda w: w.record.data or b"", None if features else encoder, on_bad=bad,
                                batch_size=batch_size, workers=workers,
                                max_bytes=None if folder else images.max_blob_bytes, thumbnails=folder,
                                digest=lambda w: w.sha256,
                                picture=lambda w: frame_image(w.frame) if w.frame is not None else None,
                                device_decode=ocr is None)  # OCR reads the decoded picture on the CPU
    batches = (([_to_store(p, keep_picture=ocr is not None, thumbnail=folder) for p in batch], pixels)
               for batch, pixels in prepared)
    words = _Words(texts, ocr, images, library) if texts is not None or ocr is not None else None
    if features:
        encoded: Iterable[tuple[list[_Work], np.ndarray]] = (
            (batch, normalise(np.stack([w.record.vector for w in batch]))) for batch, _ in batches)  # type: ignore[misc]
    else:
        encoded = encoder.encode_pixel_batches(batches)

    def store(batch: list[_Work], vecs: np.ndarray) -> None:
        """Images, then vectors, then words and file records: one batch, on the writer thread."""
        _write(batch, vecs, vectors, images, library)
        if words is not None:
            words.add(batch)
        done = [w.frame.job.stored() for w in batch if w.frame is not None and w.unit]
        images.put_videos(library, done)  # once its last frame is in both stores, then its file
        if book is not None:
            book.stored([w.record for w in batch if w.unit])

    def written(batch: list[_Work], future: Future[None]) -> None:
        future.result()  # a failed write ends the ingest with its error
        units = [w for w in batch if w.unit]
        changed = sum(w.changed for w in units)
        report.changed += changed
        report.added += len(units) - changed
        for w in batch:
            if w.frame is not None:
                w.frame.job.written += 1
                report.frames += 1
        report.videos += sum(w.frame is not None for w in units)
        tick(len(units))

    writes: deque[tuple[list[_Work], Future[None]]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="write") as writer:
        try:
            for batch, vecs in encoded:
                if features:
                    batch, vecs = _check_dims(batch, vecs, meta.dim, report)
                writes.append((batch, writer.submit(store, batch, vecs)))
                while writes and (writes[0][1].done() or len(writes) > WRITES_AHEAD):
                    written(*writes.popleft())
            while writes:
                written(*writes.popleft())
        finally:
            for _, future in writes:
                future.cancel()
    if words is not None:
        words.finish()
    videos.remove_failed(vectors, images, texts)
    try:
        if book is not None:
            book.finish(sync, allow_mass_removal, removal_share)
    finally:
        if flush:
            vectors.flush(library)
    report.seconds = time.perf_counter() - started
    log.info("ingest into %s: %s", library, report.summary())
    return report


class _Folder:
    """A folder ingest's bookkeeping: the files it recorded, moves, and (with sync) what is gone."""

    def __init__(self, scan: FolderScan, vectors: VectorStore, images: ImageStore, library: str,
                 report: IngestReport, texts: TextIndex | None = None) -> None:
        self.scan, self.vectors, self.images, self.library, self.report = scan, vectors, images, library, report
        self.texts = texts
        report.unchanged = scan.unchanged
        self.copies: list[Record] = []  # files whose content another file of this run holds
        self.gone_ids: dict[int, list[str]] = {}
        for path, image_id in scan.gone.items():
            self.gone_ids.setdefault(image_id, []).append(path)

    def stored(self, records: list[Record]) -> None:
        """Record files whose image is now in both stores (written last: a crash before leaves them unrecorded,
        and the re-run reads them again)."""
        files = {r.stat.path: FileState(r.stat.size, r.stat.mtime_ns, r.image_id) for r in records
                 if r.stat is not None and r.image_id is not None}
        self.images.put_files(self.library, self.scan.root, files)

    def present(self, record: Record) -> None:
        """A file whose image the library already holds: unchanged content, a move, or a copy."""
        assert record.stat is not None and record.image_id is not None
        path, image_id = record.stat.path, record.image_id
        if self.scan.changed.get(path) == image_id:
            self.report.unchanged += 1  # touched, same content
        elif self.gone_ids.get(image_id):
            old = self.gone_ids[image_id].pop()
            self._move(image_id, path)
            self.images.put_files(self.library, self.scan.root, {path: FileState(record.stat.size,
                                                                                 record.stat.mtime_ns, image_id)})
            self.images.delete_files(self.library, self.scan.root, [old])
            del self.scan.gone[old]
            self.report.moved += 1
            return
        else:
            self.report.present += 1
        self.stored([record])

    def _move(self, image_id: int, path: str) -> None:
        """Point the image (a video: each of its frames) at its new path in both stores, keeping its vector
        (nothing is encoded)."""
        video = self.images.get_videos(self.library, [image_id]).get(image_id)
        if video is not None:
            self._move_video(video, path)
            return
        self.images.set_paths(self.library, {image_id: path})
        vector = self.vectors.vectors(self.library, [image_id]).get(image_id)
        if vector is not None:
            taken = self.vectors.attrs(self.library, [image_id]).get(image_id, ("", 0))[1]
            self.vectors.upsert(self.library, [image_id], vector[None, :], [(path, taken)])
            text = self.texts.texts(self.library, [image_id]).get(image_id) if self.texts is not None else None
            if text:  # its words move with it, so a folder filter on a keyword search finds it there too
                self.texts.upsert(self.library, [image_id], [text], [(path, taken)])  # type: ignore[union-attr]

    def _move_video(self, video: StoredVideo, path: str) -> None:
        frames = self.images.video_frames(self.library, [video.video_id]).get(video.video_id, [])
        ids = [f for f, _ in frames]
        self.images.set_paths(self.library, dict.fromkeys(ids, path))
        found = self.vectors.vectors(self.library, ids)
        kept = [(f, t) for f, t in frames if f in found]
        if kept:
            self.vectors.upsert(self.library, [f for f, _ in kept], np.stack([found[f] for f, _ in kept]),
                                [(path, video.taken)] * len(kept), [(video.video_id, t) for _, t in kept])
        if self.texts is not None:
            texts = self.texts.texts(self.library, ids)
            self.texts.upsert(self.library, list(texts), list(texts.values()), [(path, video.taken)] * len(texts))
        self.images.put_videos(self.library, [dataclasses.replace(video, path=path)])

    def finish(self, sync: bool, allow_mass_removal: bool = False, share: float = MASS_REMOVAL_SHARE) -> None:
        """Record copies of files stored in this run; without sync, count what is gone; with it, remove the
        images no remaining file holds (MassRemovalError, and nothing removed, when that is too many)."""
        ids = [r.image_id for r in self.copies if r.image_id is not None]
        stored = self.vectors.existing(self.library, ids) | set(self.images.get_videos(self.library, ids))
        for record in self.copies:
            if record.image_id in stored:
                self.present(record)
            else:
                self.report.bad.append(BadRecord(record.line, "same content as another file of this folder, "
                                                              "which could not be ingested", record.file))
        gone, replaced = self.scan.gone, set(self.scan.changed.values())
        if not sync:
            self.report.missing = len(gone)
            return
        recorded = self.scan.recorded
        if gone and not allow_mass_removal and (self.scan.found == 0 or len(gone) >= recorded
                                                or len(gone) > share * recorded):
            raise MassRemovalError(self.scan.root, len(gone), recorded, self.scan.found, share)
        candidates = set(gone.values()) | replaced
        # An image stays while any other recorded file (here or in another folder) still holds it.
        leaving = {(self.scan.root, p) for p in gone}
        owners = self.images.file_owners(self.library, sorted(candidates))
        remove = sorted(i for i in candidates if not owners.get(i, set()) - leaving)
        # Vectors first, then images, then the file records: a crash at any point leaves the gone files
        # recorded, so the next sync run removes what is left (`check` never sees a vector without an image).
        # a video goes with every one of its frames
        frames = [f for found in self.images.video_frames(self.library, remove).values() for f, _ in found]
        self.vectors.delete(self.library, [*remove, *frames])
        self.vectors.flush(self.library)
        if self.texts is not None:
            self.texts.delete(self.library, [*remove, *frames])
        self.images.delete_many(self.library, [*remove, *frames])
        self.images.delete_videos(self.library, remove)
        self.images.delete_files(self.library, self.scan.root, sorted(gone))
        self.report.removed = len(gone) + len(replaced.intersection(remove))


class _Videos:
    """A run's videos: each video's work item becomes its sampled frames; a video that fails part-way is reported
    once, and the frames of it already written are removed at the end."""

    def __init__(self, book: _Folder | None, interval: float, supported: bool, library: str, report: IngestReport,
                 tick: Callable[[int], None]) -> None:
        self.book, self.interval, self.supported = book, interval, supported
        self.library, self.report, self.tick = library, report, tick
        self.failed: list[VideoJob] = []

    def expand(self, work: Iterator[_Work]) -> Iterator[_Work]:
        """Pictures as they come; each video as its frames, sampled as the pipeline takes them."""
        for item in work:
            if not item.record.video:
                yield item
                continue
            if self.book is None or not self.supported:
                reason = NEEDS_MIGRATE.format(library=self.library) if self.book is not None else "not a folder"
                self.report.bad.append(BadRecord(item.record.line, reason, item.record.file))
                self.tick(1)
                continue
            job = VideoJob(item.record, item.sha256, self.interval, self.book.scan.root, item.changed)
            for frame in sampled_ahead(job):
                yield _Work(item.record, item.sha256, True, changed=item.changed, frame=frame)
            if job.error is not None:
                self.fail(job, job.error)

    def fail(self, job: VideoJob, reason: str) -> None:
        """Report a video bad (once), whatever failed: its file or one of its frames."""
        if job in self.failed:
            return
        job.error = job.error or reason
        self.failed.append(job)
        self.report.bad.append(BadRecord(job.record.line, reason, job.record.file))
        self.tick(1)

    def remove_failed(self, vectors: VectorStore, images: ImageStore, texts: TextIndex | None) -> None:
        """Remove from every store the frames written of videos that failed part-way (vectors first)."""
        ids = [i for job in self.failed for i in job.frame_ids]
        self.report.frames -= sum(job.written for job in self.failed)
        if not ids:
            return
        vectors.delete(self.library, ids)
        if texts is not None:
            texts.delete(self.library, ids)
        images.delete_many(self.library, ids)


def _plan(records: Iterator[Record], vectors: VectorStore, images: ImageStore, library: str,
          report: IngestReport, tick: Callable[[int], None], book: _Folder | None = None) -> Iterator[_Work]:
    """Decide per record: bad, already present, needs its vector only, or needs both writes."""
    seen: dict[int, tuple[bytes, int]] = {}
    pending: list[Record] = []
    for chunk in chunks(records, LOOKUP_CHUNK):
        candidates: list[tuple[Record, str]] = []
        for record in chunk:
            if record.error is not None or record.image_id is None:
                report.bad.append(BadRecord(record.line, record.error or "no image id", record.file))
                tick(1)
                continue
            if record.data is None and not record.video:
                report.bad.append(BadRecord(record.line, f"no image data for image id {record.image_id}",
                                            record.file))
                tick(1)
                continue
            sha = record.sha256 or hashlib.sha256(record.data or b"").hexdigest()
            first = seen.get(record.image_id)
            if first is not None:
                if first[0] != bytes.fromhex(sha[:16]):
                    report.bad.append(BadRecord(record.line, f"duplicate image id {record.image_id} with different "
                                                             f"content from line {first[1]}", record.file))
                elif book is not None:
                    pending.append(record)  # a copy of a file in this run: recorded once that one is written
                else:
                    report.present += 1
                tick(1)
                continue
            seen[record.image_id] = (bytes.fromhex(sha[:16]), record.line)
            candidates.append((record, sha))
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
                report.bad.append(BadRecord(record.line, f"image id {image_id} is already stored with different "
                                                         "content", record.file))
                tick(1)
            elif image_id in with_vector:
                if book is not None:
                    book.present(record)
                else:
                    report.present += 1
                tick(1)
            else:
                changed = book is not None and record.stat is not None and record.stat.path in book.scan.changed
                yield _Work(record, sha, store_image=image_id not in stored, changed=changed)
    if book is not None:
        book.copies = pending


class _Words:
    """Captions and OCR text into the keyword index. OCR runs on a thread of its own, a few batches behind the
    encoder, so that it never holds up encoding; its results are written as they complete (after their
    images), and all of them before the ingest returns."""

    def __init__(self, texts: TextIndex | None, ocr: OcrReader | None, images: ImageStore, library: str) -> None:
        self.texts, self.ocr, self.images, self.library = texts, ocr, images, library
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocr") if ocr is not None else None
        self.pending: deque[tuple[list[_Work], Future[list[OcrText]]]] = deque()

    def add(self, batch: list[_Work]) -> None:
        """Index a written batch (now, or when OCR has read it)."""
        batch = [w for w in batch if w.stored is not None]
        if self.pool is None or self.ocr is None:
            self._index(batch, None)
            return
        pictures = [w.picture for w in batch]
        for w in batch:
            w.picture = None
        self.pending.append((batch, self.pool.submit(self.ocr.read_many, pictures)))
        self._drain(keep=OCR_AHEAD)

    def finish(self) -> None:
        """Wait for OCR to read every picture, and write what it read."""
        try:
            self._drain(keep=0)
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)
        if self.texts is not None:
            self.texts.flush(self.library)

    def _drain(self, keep: int) -> None:
        """Write what OCR has read, waiting while more than `keep` batches are still being read."""
        while self.pending and (self.pending[0][1].done() or len(self.pending) > keep):
            batch, future = self.pending.popleft()
            self._index(batch, future.result())

    def _index(self, batch: list[_Work], read: list[OcrText] | None) -> None:
        stored = [w.stored for w in batch if w.stored is not None]
        if read is not None:
            self.images.set_texts(self.library, {s.image_id: (r.text, r.confidence) for s, r in zip(stored, read)})
        if self.texts is not None:
            ocr_texts: list[str | None] = [r.text for r in read] if read is not None else [None] * len(stored)
            words = [image_text(s.captions, t) for s, t in zip(stored, ocr_texts)]
            self.texts.upsert(self.library, [s.image_id for s in stored], words, [(s.path, s.taken) for s in stored])


def _to_store(prepared: Prepared[_Work], keep_picture: bool = False, thumbnail: bool = False) -> _Work:
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


def _check_dims(batch: list[_Work], vecs: np.ndarray, dim: int,
                report: IngestReport) -> tuple[list[_Work], np.ndarray]:
    if vecs.shape[1] == dim:
        return batch, vecs
    for w in batch:
        report.bad.append(BadRecord(w.record.line, f"feature has {vecs.shape[1]} dimensions; the library's model "
                                                   f"has {dim}", w.record.file))
    return [], vecs[:0]


def _write(batch: list[_Work], vecs: np.ndarray, vectors: VectorStore, images: ImageStore, library: str) -> None:
    """Images first, then their vectors: a crash in between leaves images a re-run will encode."""
    if not batch:
        return
    images.put_many(library, [w.stored for w in batch if w.store_image and w.stored is not None])
    attrs = [(w.stored.path, w.stored.taken) if w.stored is not None else NO_ATTRS for w in batch]
    frames = [(w.frame.job.video_id, w.frame.time) if w.frame is not None else NO_FRAME for w in batch]
    vectors.upsert(library, [w.stored.image_id if w.stored is not None else w.record.image_id  # type: ignore[misc]
                             for w in batch], vecs, attrs, frames)
