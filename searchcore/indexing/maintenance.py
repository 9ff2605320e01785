"""Work on a library already ingested: reading the words in its pictures (the OCR backfill), and comparing the
image store with the vectors (and a folder library with its files) and repairing what differs. The engine
calls these with its stores and models."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from searchcore.errors import ImageDecodeError, RecordError
from searchcore.ids import chunks
from searchcore.indexing.ingest import Progress
from searchcore.indexing.originals import check_folders, whole
from searchcore.indexing.pipeline import prepared_batches
from searchcore.models.encoder import Encoder
from searchcore.records import BadRecord
from searchcore.sources.imaging import decode_image
from searchcore.stores.image_db import ImageDb
from searchcore.stores.images import StoredImage
from searchcore.stores.text_index import TextIndex, image_text
from searchcore.stores.vectors import VectorStore

if TYPE_CHECKING:
    from searchcore.models.ocr import OcrReader

log = logging.getLogger(__name__)
OCR_CHUNK = 32  # pictures `searchcore ocr` reads between writes
REPAIR_CHUNK = 64  # images a repair encodes again per read of the image store


@dataclass
class OcrReport:
    """What `searchcore ocr` did: pictures read (and how many had words), skipped as read before, and bad."""

    library: str
    read: int = 0
    with_text: int = 0
    skipped: int = 0
    bad: list[BadRecord] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for the CLI."""
        return (f"library {self.library}: read {self.read} pictures ({self.with_text} with words), {self.skipped} "
                f"read before, {len(self.bad)} bad ({self.seconds:.1f}s)")

    def to_json(self) -> dict[str, Any]:
        """The CLI's --json shape."""
        return {"library": self.library, "read": self.read, "with_text": self.with_text, "skipped": self.skipped,
                "bad": [b.to_json() for b in self.bad], "seconds": round(self.seconds, 3)}


@dataclass
class CheckReport:
    """Differences between the two stores, and what a repair did about them."""

    library: str
    images: int
    vectors: int
    missing_vectors: list[int]
    orphan_vectors: list[int]
    repaired: bool = False
    copy_problem: str | None = None  # how the in-process exact copy (Lite) differed from Milvus; it was reloaded
    missing_files: list[str] = field(default_factory=list)  # folder pictures whose file is gone ("folder/path")
    changed_files: list[str] = field(default_factory=list)  # folder pictures whose file changed since ingest
    changed_roots: list[str] = field(default_factory=list)  # the folders holding them (a re-scan reads them)

    @property
    def consistent(self) -> bool:
        """True when both stores hold exactly the same ids, the exact copy agreed with Milvus, and every folder
        picture's file is there unchanged."""
        return (not self.missing_vectors and not self.orphan_vectors and self.copy_problem is None
                and not self.missing_files and not self.changed_files)

    def to_json(self) -> dict[str, Any]:
        """The CLI's --json shape."""
        return {"library": self.library, "images": self.images, "vectors": self.vectors,
                "missing_vectors": self.missing_vectors[:1000], "orphan_vectors": self.orphan_vectors[:1000],
                "missing_files": self.missing_files[:1000], "changed_files": self.changed_files[:1000],
                "copy_problem": self.copy_problem, "consistent": self.consistent, "repaired": self.repaired}


def read_words(images: ImageDb, library: str, reader: OcrReader, texts: TextIndex | None, resolution: int, *,
               progress: Progress | None = None) -> OcrReport:
    """Read the words in every image of a library that OCR has not read yet, decoded as ingest decodes it for a
    model of this input resolution; the words go to the image store and (when given) the keyword index."""
    started = time.perf_counter()
    report = OcrReport(library)
    ids = list(images.ids(library))
    for chunk in chunks(iter(ids), OCR_CHUNK):
        todo = [m for m in images.get_meta_many(library, chunk).values() if m.text is None]
        report.skipped += len(chunk) - len(todo)
        stored = images.get_many(library, [m.image_id for m in todo])
        pictures, kept = [], []
        for meta in todo:
            try:
                # decoded as ingest decodes it, so the same picture is read (and the same words come out)
                pictures.append(decode_image(whole(images, library, stored[meta.image_id]).data,
                                             target=resolution).image)
                kept.append(meta)
            except (ImageDecodeError, KeyError) as exc:
                reason = exc if isinstance(exc, ImageDecodeError) else str(exc)
                report.bad.append(BadRecord(0, RecordError("stored_image_bad", image_id=meta.image_id, reason=reason)))
        read = reader.read_many(pictures)
        images.set_texts(library, {m.image_id: (r.text, r.confidence) for m, r in zip(kept, read)})
        if texts is not None:
            texts.upsert(library, [m.image_id for m in kept], [image_text(m.captions, r.text)
                                                              for m, r in zip(kept, read)],
                         [(m.path, m.taken) for m in kept])
        report.read += len(kept)
        report.with_text += sum(bool(r.text) for r in read)
        if progress is not None:
            progress(report.read + report.skipped + len(report.bad), len(ids))
    if texts is not None:
        texts.flush(library)
    report.seconds = time.perf_counter() - started
    return report


def compare_stores(images: ImageDb, vectors: VectorStore, library: str,
                   texts: TextIndex | None = None) -> CheckReport:
    """The ids only one store holds, how the in-process copies (of the vectors, of the keyword index) differed
    from Milvus (a stale copy is reloaded), and the folder pictures whose file is missing or changed (by stat:
    nothing is read)."""
    problems = [vectors.check_copy(library), texts.check_copy(library) if texts is not None else None]
    copy_problem = "; ".join(p for p in problems if p) or None
    image_ids = set(images.ids(library))
    vector_ids = set(vectors.ids(library))
    folders = check_folders(images, library)
    return CheckReport(library, len(image_ids), len(vector_ids), sorted(image_ids - vector_ids),
                       sorted(vector_ids - image_ids), copy_problem=copy_problem, missing_files=folders.missing,
                       changed_files=folders.changed, changed_roots=folders.roots_changed)


def repair_vectors(report: CheckReport, images: ImageDb, vectors: VectorStore, encoder: Encoder, *,
                   batch_size: int, workers: int) -> None:
    """Drop the orphan vectors a check found and encode the images that lack one again (an image that no longer
    decodes is removed); marks the report repaired."""
    library = report.library

    def undecodable(image: StoredImage, reason: ImageDecodeError) -> None:
        log.warning("library %s: stored image %d cannot be decoded (%s); removing it", library, image.image_id,
                    reason)
        images.delete_many(library, [image.image_id])

    vectors.delete(library, report.orphan_vectors)
    for chunk in chunks(report.missing_vectors, REPAIR_CHUNK):
        stored = [whole(images, library, image) for image in images.get_many(library, chunk).values()]
        batches = prepared_batches(stored, lambda image: image.data, encoder, on_bad=undecodable,
                                   batch_size=batch_size, workers=workers)
        for batch, found in encoder.encode_pixel_batches(batches):
            vectors.upsert(library, [prepared.item.image_id for prepared in batch], found,
                           [(prepared.item.path, prepared.item.taken) for prepared in batch],
                           [(prepared.item.video_id, prepared.item.time_s) for prepared in batch])
    vectors.flush(library)
    report.repaired = True
