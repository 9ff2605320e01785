"""The streaming ingest pipeline: read → decode → encode → store (images before vectors).

Memory stays bounded whatever the split size: records are looked up in chunks,
decoded in a thread pool with a bounded look-ahead, encoded in batches, and
written batch by batch. A re-run skips what both stores hold, and re-encodes
anything whose vector is missing, so an interrupted ingest completes.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import numpy as np

from .encoder import Encoder, normalise
from .ids import chunks
from .image_store import ImageStore, StoredImage
from .pipeline import Prepared, prepared_batches
from .records import BadRecord, Record, Source
from .vector_store import VectorStore

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

Progress = Callable[[int, "int | None"], None]
LOOKUP_CHUNK = 256


@dataclass
class IngestReport:
    """What an ingest did: added, already present, and every bad record with its reason."""

    library: str
    added: int = 0
    present: int = 0
    bad: list[BadRecord] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line: "library L: N added, M already present, K bad (T s)"."""
        return (f"library {self.library}: {self.added} added, {self.present} already present, {len(self.bad)} bad "
                f"({self.seconds:.1f}s)")

    def to_json(self) -> dict[str, Any]:
        """The CLI's --json shape."""
        return {"library": self.library, "added": self.added, "present": self.present,
                "bad": [asdict(b) for b in self.bad], "seconds": round(self.seconds, 3)}


@dataclass
class _Work:
    record: Record
    sha256: str
    store_image: bool
    stored: StoredImage | None = None


def ingest(source: Source, encoder: Encoder, vectors: VectorStore, images: ImageStore, library: str, *,
           batch_size: int = 8, workers: int = 0, progress: Progress | None = None,
           flush: bool = True) -> IngestReport:
    """Ingest every record of a source into a library; bad records are reported and skipped.

    flush=False leaves the final flush to the caller (Ray's driver flushes once for all its workers).
    """
    started = time.perf_counter()
    meta = vectors.open_library(library, encoder.name, encoder.dim, create=True)
    report = IngestReport(library, bad=list(source.problems))
    done = 0

    def tick(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, source.total)

    work = _plan(source.records, vectors, images, library, report, tick)

    def bad(item: _Work, reason: str) -> None:
        report.bad.append(BadRecord(item.record.line, reason, item.record.file))
        tick(1)

    features = source.kind == "features"
    prepared = prepared_batches(work, lambda w: w.record.data or b"", None if features else encoder, on_bad=bad,
                                batch_size=batch_size, workers=workers, max_bytes=images.max_blob_bytes)
    batches = (([_to_store(p) for p in batch], pixels) for batch, pixels in prepared)
    if features:
        encoded: Iterable[tuple[list[_Work], np.ndarray]] = (
            (batch, normalise(np.stack([w.record.vector for w in batch]))) for batch, _ in batches)  # type: ignore[misc]
    else:
        encoded = encoder.encode_pixel_batches(batches)
    for batch, vecs in encoded:
        if features:
            batch, vecs = _check_dims(batch, vecs, meta.dim, report)
        _write(batch, vecs, vectors, images, library)
        report.added += len(batch)
        tick(len(batch))
    if flush:
        vectors.flush(library)
    report.seconds = time.perf_counter() - started
    log.info("ingest into %s: %d added, %d present, %d bad in %.1fs", library, report.added, report.present,
             len(report.bad), report.seconds)
    return report


def _plan(records: Iterator[Record], vectors: VectorStore, images: ImageStore, library: str,
          report: IngestReport, tick: Callable[[int], None]) -> Iterator[_Work]:
    """Decide per record: bad, already present, needs its vector only, or needs both writes."""
    seen: dict[int, tuple[bytes, int]] = {}
    for chunk in chunks(records, LOOKUP_CHUNK):
        candidates: list[tuple[Record, str]] = []
        for record in chunk:
            if record.error is not None or record.image_id is None:
                report.bad.append(BadRecord(record.line, record.error or "no image id", record.file))
                tick(1)
                continue
            if record.data is None:
                report.bad.append(BadRecord(record.line, f"no image data for image id {record.image_id}",
                                            record.file))
                tick(1)
                continue
            sha = hashlib.sha256(record.data).hexdigest()
            first = seen.get(record.image_id)
            if first is not None:
                if first[0] != bytes.fromhex(sha[:16]):
                    report.bad.append(BadRecord(record.line, f"duplicate image id {record.image_id} with different "
                                                             f"content from line {first[1]}", record.file))
                else:
                    report.present += 1
                tick(1)
                continue
            seen[record.image_id] = (bytes.fromhex(sha[:16]), record.line)
            candidates.append((record, sha))
        ids = [r.image_id for r, _ in candidates]
        stored = images.hashes(library, ids)  # type: ignore[arg-type]
        with_vector = vectors.existing(library, [i for i in ids if i in stored])  # type: ignore[misc]
        for record, sha in candidates:
            image_id = record.image_id
            assert image_id is not None
            if image_id in stored and stored[image_id] != sha:
                report.bad.append(BadRecord(record.line, f"image id {image_id} is already stored with different "
                                                         "content", record.file))
                tick(1)
            elif image_id in with_vector:
                report.present += 1
                tick(1)
            else:
                yield _Work(record, sha, store_image=image_id not in stored)


def _to_store(prepared: Prepared[_Work]) -> _Work:
    """The decoded image as it will be stored; the raw bytes are freed early."""
    work, decoded, record = prepared.item, prepared.decoded, prepared.item.record
    assert record.image_id is not None
    work.stored = StoredImage(record.image_id, decoded.data, decoded.format, decoded.width, decoded.height,
                              work.sha256, f"{record.file}:{record.line}", record.captions)
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
    vectors.upsert(library, [w.record.image_id for w in batch], vecs)  # type: ignore[misc]
