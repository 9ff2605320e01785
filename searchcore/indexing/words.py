"""Ingest's words stage: captions and the words OCR reads in each picture, into the library's keyword index.

OCR runs on a thread of its own, a few batches behind the encoder, so that it never holds up encoding; its
results are written as they complete (after their images), and all of them before the ingest returns.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from searchcore.indexing.plan import Work
from searchcore.stores.image_db import ImageDb
from searchcore.stores.text_index import TextIndex, image_text

if TYPE_CHECKING:
    from searchcore.models.ocr import OcrReader, OcrText

OCR_AHEAD = 8  # batches OCR may fall behind the encoder before the ingest waits for it (bounds the memory)


class Words:
    """Captions and OCR text of written batches into the keyword index (and OCR text into the image store)."""

    def __init__(self, texts: TextIndex | None, ocr: OcrReader | None, images: ImageDb, library: str) -> None:
        self.texts, self.ocr, self.images, self.library = texts, ocr, images, library
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocr") if ocr is not None else None
        self.pending: deque[tuple[list[Work], Future[list[OcrText]]]] = deque()

    def add(self, batch: list[Work]) -> None:
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

    def _index(self, batch: list[Work], read: list[OcrText] | None) -> None:
        stored = [w.stored for w in batch if w.stored is not None]
        if read is not None:
            self.images.set_texts(self.library, {s.image_id: (r.text, r.confidence) for s, r in zip(stored, read)})
        if self.texts is not None:
            ocr_texts: list[str | None] = [r.text for r in read] if read is not None else [None] * len(stored)
            words = [image_text(s.captions, t) for s, t in zip(stored, ocr_texts)]
            self.texts.upsert(self.library, [s.image_id for s in stored], words, [(s.path, s.taken) for s in stored])
