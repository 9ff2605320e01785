"""The streaming ingest: plan → read → encode → write (images before vectors) → words, one stage a module.

Memory stays bounded whatever the split size: records are read (base64 and hashing in reader processes for a
large split), planned against the stores in chunks (plan.py), decoded in a thread pool with a bounded
look-ahead (read.py), encoded in batches (encode.py), and written batch by batch on a writer thread of their
own, at most WRITES_AHEAD batches behind the encoder, in order (write.py); captions and OCR text go into the
keyword index beside them (words.py). A re-run skips what both stores hold, and re-encodes anything whose
vector is missing, so an interrupted ingest completes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from searchcore.indexing.encode import encode, features
from searchcore.indexing.folder_book import FolderBook
from searchcore.indexing.plan import plan
from searchcore.indexing.read import Videos, read
from searchcore.indexing.report import IngestReport
from searchcore.indexing.words import Words
from searchcore.indexing.write import Writer
from searchcore.models.encoder import Encoder
from searchcore.records import Source
from searchcore.sources.videos import DEFAULT_INTERVAL
from searchcore.stores.image_db import ImageDb
from searchcore.stores.text_index import TextIndex
from searchcore.stores.vectors import VectorStore

if TYPE_CHECKING:
    from searchcore.models.ocr import OcrReader

log = logging.getLogger(__name__)

Progress = Callable[[int, "int | None"], None]
# A sync run refuses, unless told otherwise, to remove more than this share of a folder's recorded files at
# once, and always refuses to remove all of them: that is what an unmounted drive or a wrong folder looks like.
MASS_REMOVAL_SHARE = 0.5


@dataclass(frozen=True)
class IngestOptions:
    """How an ingest runs, beside the source, encoder, stores and library it is given.

    For a folder, sync also removes the images of files that are gone; a sync that would remove all of the
    folder's files, or more than removal_share of them, raises MassRemovalError and removes nothing, unless
    allow_mass_removal. flush=False leaves the final flush to the caller (Ray's driver flushes once for all
    its workers). With texts, captions (and with ocr, the words read in each picture) go into the library's
    keyword index. A folder's videos are sampled every frame_interval seconds (see indexing/videos.py).
    """

    batch_size: int = 8
    workers: int = 0
    progress: Progress | None = None
    flush: bool = True
    sync: bool = False
    texts: TextIndex | None = None
    ocr: OcrReader | None = None
    allow_mass_removal: bool = False
    removal_share: float = MASS_REMOVAL_SHARE
    frame_interval: float = DEFAULT_INTERVAL


class _Tally:
    """Records done so far (bad, present or written), passed on to the progress callback."""

    def __init__(self, progress: Progress | None, total: int | None) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self, n: int = 1) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)


def ingest(source: Source, encoder: Encoder, vectors: VectorStore, images: ImageDb, library: str,
           options: IngestOptions | None = None) -> IngestReport:
    """Ingest every record of a source into a library; bad records are reported and skipped.

    For a folder, files unchanged since the last ingest are skipped unread (see IngestOptions for sync and
    the rest)."""
    opts = options or IngestOptions()
    started = time.perf_counter()
    meta = vectors.open_library(library, encoder.name, encoder.dim, create=True, model_file=encoder.spec.source,
                                digest=encoder.spec.digest)
    report = IngestReport(library, bad=list(source.problems), folder=source.scan is not None)
    book = FolderBook(source.scan, vectors, images, library, report, opts.texts) if source.scan is not None else None
    tick = _Tally(opts.progress, source.total)
    videos = Videos(book, opts.frame_interval, meta.videos, library, report, tick)
    words = Words(opts.texts, opts.ocr, images, library) if opts.texts is not None or opts.ocr is not None else None
    from_features = source.kind == "features"

    planned = plan(source.records, vectors, images, library, report, tick, book)
    batches = read(planned, None if from_features else encoder, images, videos, folder=book is not None,
                   batch_size=opts.batch_size, workers=opts.workers, keep_pictures=opts.ocr is not None)
    encoded = features(batches, meta.dim, report) if from_features else encode(batches, encoder)
    Writer(vectors, images, library, report, tick, words, book).write_all(encoded)

    if words is not None:
        words.finish()
    videos.remove_failed(vectors, images, opts.texts)
    try:
        if book is not None:
            book.finish(opts.sync, opts.allow_mass_removal, opts.removal_share)
    finally:
        if opts.flush:
            vectors.flush(library)
    report.seconds = time.perf_counter() - started
    log.info("ingest into %s: %s", library, report.summary())
    return report
