"""Ingest's last stage: each encoded batch written, images first, then vectors, then words and file records.

The writes run on a thread of their own, in order, at most WRITES_AHEAD batches behind the encoder. The order
is what makes an ingest crash-safe: a crash after a batch's images leaves images that a re-run encodes again,
and a file is recorded (and so skipped unread next time) only once its image is in both stores.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from searchcore.indexing.plan import Work
from searchcore.indexing.words import Words
from searchcore.stores.image_db import ImageDb
from searchcore.stores.vectors import NO_ATTRS, NO_FRAME, VectorStore

if TYPE_CHECKING:
    from searchcore.indexing.folder_book import FolderBook
    from searchcore.indexing.report import IngestReport

WRITES_AHEAD = 2  # batches the writer may fall behind the encoder before the ingest waits for it


def write_batch(batch: list[Work], vecs: np.ndarray, vectors: VectorStore, images: ImageDb, library: str) -> None:
    """Images first, then their vectors: a crash in between leaves images a re-run will encode."""
    if not batch:
        return
    images.put_many(library, [w.stored for w in batch if w.store_image and w.stored is not None])
    attrs = [(w.stored.path, w.stored.taken) if w.stored is not None else NO_ATTRS for w in batch]
    frames = [(w.frame.job.video_id, w.frame.time) if w.frame is not None else NO_FRAME for w in batch]
    vectors.upsert(library, [w.stored.image_id if w.stored is not None else w.record.image_id  # type: ignore[misc]
                             for w in batch], vecs, attrs, frames)


class Writer:
    """Writes a run's encoded batches, and counts each file in the report once it is written."""

    def __init__(self, vectors: VectorStore, images: ImageDb, library: str, report: IngestReport,
                 tick: Callable[[int], None], words: Words | None = None, book: FolderBook | None = None) -> None:
        self.vectors, self.images, self.library, self.report, self.tick = vectors, images, library, report, tick
        self.words, self.book = words, book

    def write_all(self, encoded: Iterable[tuple[list[Work], np.ndarray]]) -> None:
        """Write every batch, at most WRITES_AHEAD behind; a failed write ends the ingest with its error."""
        writes: deque[tuple[list[Work], Future[None]]] = deque()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="write") as writer:
            try:
                for batch, vecs in encoded:
                    writes.append((batch, writer.submit(self.store, batch, vecs)))
                    while writes and (writes[0][1].done() or len(writes) > WRITES_AHEAD):
                        self._written(*writes.popleft())
                while writes:
                    self._written(*writes.popleft())
            finally:
                for _, future in writes:
                    future.cancel()

    def store(self, batch: list[Work], vecs: np.ndarray) -> None:
        """Images, then vectors, then words and file records: one batch, on the writer thread."""
        write_batch(batch, vecs, self.vectors, self.images, self.library)
        if self.words is not None:
            self.words.add(batch)
        done = [w.frame.job.stored() for w in batch if w.frame is not None and w.unit]
        self.images.put_videos(self.library, done)  # once its last frame is in both stores, then its file
        if self.book is not None:
            self.book.stored([w.record for w in batch if w.unit])

    def _written(self, batch: list[Work], future: Future[None]) -> None:
        future.result()  # a failed write ends the ingest with its error
        units = [w for w in batch if w.unit]
        changed = sum(w.changed for w in units)
        self.report.changed += changed
        self.report.added += len(units) - changed
        for w in batch:
            if w.frame is not None:
                w.frame.job.written += 1
                self.report.frames += 1
        self.report.videos += sum(w.frame is not None for w in units)
        self.tick(len(units))
