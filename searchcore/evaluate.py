"""Retrieval evaluation in Chinese-CLIP's own formats: predictions, recall, feature files.

`predict` writes the `{"text_id", "image_ids"}` lines that cn_clip's
eval/evaluation.py scores; `evaluate` computes the same text→image recall
(and image→text recall as evaluation_tr.py does) over the library's stores;
`extract` writes the feature jsonl files of cn_clip's extract_features.py,
which `searchcore ingest --features` reads back. Text→image searches go
through the library's Milvus collection, as a user's search does.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from searchcore.errors import DatasetError, ImageDecodeError, LibraryError, RecordError
from searchcore.indexing.pipeline import prepared_batches
from searchcore.models.encoder import Encoder
from searchcore.records import BadRecord, Record
from searchcore.search import parse_top_k
from searchcore.sources.chinese_clip import (
    feature_line,
    image_features_file,
    read_texts,
    text_features_file,
    texts_file,
)
from searchcore.sources.datasets import open_source
from searchcore.sources.imaging import decode_image
from searchcore.stores.vectors import VectorStore

if TYPE_CHECKING:
    from searchcore.stores.factory import Stores

log = logging.getLogger(__name__)

RECALL_AT = (1, 5, 10)
TEXT_BATCH = 64
IMAGE_BATCH = 32
# Overlap@10 an approximate index (HNSW, IVF_FLAT) must reach before `evaluate --exact` fails.
MIN_APPROX_OVERLAP = 0.95
# Scores closer than this to the 10th exact score count as ties at the cut-off: any of them is a right answer.
TIE_TOLERANCE = 1e-5


@dataclass
class Prediction:
    """One text's ranked image ids, as cn_clip's make_topk_predictions.py writes them."""

    text_id: int
    image_ids: list[int]
    scores: list[float] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        """cn_clip's prediction line."""
        return {"text_id": self.text_id, "image_ids": self.image_ids}


@dataclass
class Recall:
    """R@1/5/10 and their mean, in percent like cn_clip's scorer."""

    r1: float
    r5: float
    r10: float
    mean: float

    @classmethod
    def from_fractions(cls, r1: float, r5: float, r10: float) -> Recall:
        """Percentages computed in cn_clip's order of operations, so the floats match its out.json exactly."""
        return cls(r1 * 100, r5 * 100, r10 * 100, (r1 + r5 + r10) / 3.0 * 100)

    def to_json(self) -> dict[str, float]:
        """{"r1", "r5", "r10", "mean"}."""
        return {"r1": self.r1, "r5": self.r5, "r10": self.r10, "mean": self.mean}


@dataclass
class Evaluation:
    """Retrieval quality of one library on one split."""

    library: str
    split: str
    index: str
    texts: int
    images: int
    text_to_image: Recall
    image_to_text: Recall
    exact_overlap_at_10: float | None = None
    bad: list[BadRecord] = field(default_factory=list)

    @property
    def exact_ok(self) -> bool:
        """False when --exact found the index further from brute force than it may be."""
        if self.exact_overlap_at_10 is None:
            return True
        floor = 1.0 if self.index == "FLAT" else MIN_APPROX_OVERLAP
        return self.exact_overlap_at_10 >= floor - 1e-9

    def to_json(self) -> dict[str, Any]:
        """The CLI's --json shape."""
        return {"text_to_image": self.text_to_image.to_json(), "image_to_text": self.image_to_text.to_json(),
                "exact_overlap_at_10": self.exact_overlap_at_10, "library": self.library, "split": self.split,
                "index": self.index, "texts": self.texts, "images": self.images,
                "bad": [b.to_json() for b in self.bad]}


@dataclass
class ExtractReport:
    """Where extract wrote the feature files, and what it skipped."""

    image_features: Path
    text_features: Path
    images: int
    texts: int
    bad: list[BadRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The CLI's --json shape."""
        return {"image_features": str(self.image_features), "text_features": str(self.text_features),
                "images": self.images, "texts": self.texts,
                "bad": [b.to_json() for b in self.bad]}


def eval_text(text: str) -> str:
    """The text as cn_clip's evaluation data loader feeds it to the tokenizer (eval/data.py)."""
    return text.lower().replace("“", '"').replace("”", '"')


def recall(reference: dict[int, list[int]], ranked: dict[int, list[int]]) -> Recall:
    """Recall@1/5/10 exactly as cn_clip's evaluation.py: a query counts if any right answer is in its top k."""
    if not reference:
        raise DatasetError("no_annotated_queries")
    hits = dict.fromkeys(RECALL_AT, 0)
    for query, truth in reference.items():
        top = ranked.get(query, [])
        for k in RECALL_AT:
            if any(i in top[:k] for i in set(truth)):
                hits[k] += 1
    n = len(reference)
    return Recall.from_fractions(*(hits[k] * 1.0 / n for k in RECALL_AT))


def split_texts(root: Path, split: str) -> list[dict[str, Any]]:
    """The split's texts; a bad line is an error here, since cn_clip's scorer would refuse it too."""
    texts, problems = read_texts(root, split)
    if problems:
        first = problems[0]
        raise DatasetError("texts_bad_line", file=first.file, line=first.line, reason=first.reason, count=len(problems))
    if not texts:
        raise DatasetError("texts_empty", path=texts_file(root, split))
    return texts


def split_image_ids(root: Path, split: str) -> tuple[list[int], list[BadRecord]]:
    """Every readable image id of a split, in file order, and the records that cannot be read."""
    ids: list[int] = []
    bad: list[BadRecord] = []
    for record in open_source(root, split).records:
        if record.error is None and record.image_id is not None:
            ids.append(record.image_id)
        else:
            bad.append(BadRecord(record.line, record.error or RecordError("record_no_image_id"), record.file))
    return ids, bad


def unusable_images(root: Path, split: str, ids: set[int], max_bytes: int) -> dict[int, BadRecord]:
    """Those of these image ids whose bytes hold no image ingest would store, with ingest's reason."""
    found: dict[int, BadRecord] = {}
    for record in open_source(root, split).records:
        if record.image_id in ids and record.data is not None and record.image_id not in found:
            try:
                decode_image(record.data, max_bytes)
            except ImageDecodeError as exc:
                found[record.image_id] = BadRecord(record.line, exc, record.file)
    return found


def encode_texts(encoder: Encoder, texts: Sequence[str]) -> np.ndarray:
    """Texts → normalised vectors, in batches, with cn_clip's evaluation text normalisation."""
    if not texts:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    return np.concatenate([encoder.encode_texts([eval_text(t) for t in texts[i:i + TEXT_BATCH]])
                           for i in range(0, len(texts), TEXT_BATCH)])


Fill = Callable[[], object]  # ingests the split into the empty library (the engine's ingest of it)


def prepare_library(stores: Stores, root: Path, split: str, library: str, fill: Fill | None = None
                    ) -> list[BadRecord]:
    """The split's bad image records the library goes without.

    An empty library is filled from the split first (by fill; without one it stays empty and is refused); a
    library is refused unless it holds exactly the split's good images.
    """
    name = library
    if fill is not None and (stores.vectors.meta(name) is None or stores.vectors.count(name) == 0):
        log.info("library %s is empty; ingesting %s split %s first", name, root, split)
        fill()
    ids, bad = split_image_ids(root, split)
    wanted = set(ids)
    stored = set(stores.vectors.ids(name))
    missing, extra = wanted - stored, stored - wanted
    if missing and not extra:
        # Valid base64 of bytes that are no image: ingest reported these and stores none, so no re-run adds them.
        unusable = unusable_images(root, split, missing, stores.images.max_blob_bytes)
        wanted -= set(unusable)
        missing -= set(unusable)
        bad = sorted(bad + list(unusable.values()), key=lambda b: b.line)
    if extra:
        raise LibraryError("eval_library_extra_lacking" if missing else "eval_library_extra", library=name,
                           extra=len(extra), split=split, missing=len(missing), wanted=len(wanted))
    if missing:
        raise LibraryError("eval_library_lacking", library=name, missing=len(missing), wanted=len(wanted), split=split,
                           path=root)
    return bad


def predict(encoder: Callable[[], Encoder], stores: Stores, root: str | Path, split: str, top_k: Any = 10, *,
            library: str, fill: Fill | None = None) -> list[Prediction]:
    """Top-k image ids for every text of the split, searched in the library's Milvus collection; encoder gives
    the library's own model's (asked for once the library is ready)."""
    root = Path(root)
    k = parse_top_k(top_k)
    bad = prepare_library(stores, root, split, library, fill)
    if bad:  # predictions have no report of their own to carry them
        log.warning("split %s of %s: skipped %d bad image records: %s", split, root, len(bad),
                    "; ".join(f"{b.file}:{b.line}: {b.reason}" for b in bad[:10]) + ("; ..." if len(bad) > 10 else ""))
    texts = split_texts(root, split)
    return search_texts(stores.vectors, library, texts, encode_texts(encoder(), [t["text"] for t in texts]), k)


def search_texts(vectors: VectorStore, library: str, texts: Sequence[dict[str, Any]], queries: np.ndarray,
                 k: int) -> list[Prediction]:
    """Milvus top-k for each text's query vector, in batches."""
    count = vectors.count(library)
    if count < k:
        raise LibraryError("eval_library_too_small", library=library, count=count, top_k=k)
    predictions: list[Prediction] = []
    for start in range(0, len(texts), TEXT_BATCH):
        hits = vectors.search(library, queries[start:start + TEXT_BATCH], k)
        for entry, ranked in zip(texts[start:start + TEXT_BATCH], hits):
            predictions.append(Prediction(entry["text_id"], [h.image_id for h in ranked], [h.score for h in ranked]))
    return predictions


def write_predictions(predictions: Sequence[Prediction], path: str | Path) -> Path:
    """Write prediction lines exactly as cn_clip's make_topk_predictions.py does."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for p in predictions:
            out.write(json.dumps(p.to_json()) + "\n")
    return path


def evaluate(encoder: Callable[[], Encoder], stores: Stores, root: str | Path, split: str, *, library: str,
             exact: bool = False, fill: Fill | None = None) -> Evaluation:
    """Text→image recall through Milvus, image→text recall over the stored vectors, and optionally overlap@10;
    encoder gives the library's own model's (asked for once the library is ready)."""
    root = Path(root)
    name = library
    bad = prepare_library(stores, root, split, name, fill)
    texts = split_texts(root, split)
    text_vectors = encode_texts(encoder(), [t["text"] for t in texts])
    predictions = search_texts(stores.vectors, name, texts, text_vectors, 10)
    t2i = recall({t["text_id"]: t["image_ids"] for t in texts}, {p.text_id: p.image_ids for p in predictions})

    i2t_reference = image_to_text_reference(texts)
    text_ids = [t["text_id"] for t in texts]
    stored = stores.vectors.vectors(name, list(i2t_reference))
    image_ids = [i for i in i2t_reference if i in stored]
    ranked = top_k_exact(np.stack([stored[i] for i in image_ids]), text_vectors, min(10, len(text_ids)))
    i2t = recall(i2t_reference, {i: [text_ids[j] for j in row] for i, row in zip(image_ids, ranked)})

    all_ids = list(stores.vectors.ids(name))
    overlap = exact_overlap(stores.vectors, name, all_ids, text_vectors, predictions) if exact else None
    meta = stores.vectors.meta(name)
    return Evaluation(name, split, meta.index if meta else "?", len(texts), len(all_ids), t2i, i2t, overlap, bad)


def image_to_text_reference(texts: Sequence[dict[str, Any]]) -> dict[int, list[int]]:
    """image id → its text ids, as cn_clip's transform_ir_annotation_to_tr.py builds it."""
    reference: dict[int, list[int]] = {}
    for entry in texts:
        for image_id in entry["image_ids"]:
            reference.setdefault(image_id, []).append(entry["text_id"])
    return reference


def top_k_exact(queries: np.ndarray, gallery: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Brute-force inner-product top-k row indices, best first; ties keep gallery order as cn_clip's sort does."""
    gallery = np.asarray(gallery, dtype=np.float32)
    return np.concatenate([np.argsort(-(np.asarray(queries[i:i + chunk], dtype=np.float32) @ gallery.T), axis=1,
                                      kind="stable")[:, :k] for i in range(0, len(queries), chunk)])


def exact_overlap(vectors: VectorStore, library: str, ids: list[int], queries: np.ndarray,
                  predictions: Sequence[Prediction], chunk: int = 256) -> float:
    """Mean fraction of Milvus's top-10 found in the brute-force top-10 over the same stored vectors."""
    stored = vectors.vectors(library, ids)
    gallery_ids = np.array(list(stored), dtype=np.int64)
    gallery = np.stack(list(stored.values()))
    total = 0.0
    for start in range(0, len(predictions), chunk):
        scores = queries[start:start + chunk] @ gallery.T
        for row, prediction in zip(scores, predictions[start:start + chunk]):
            k = len(prediction.image_ids)
            cutoff = np.partition(row, len(row) - k)[len(row) - k] - TIE_TOLERANCE
            good = set(gallery_ids[row >= cutoff].tolist())
            total += sum(i in good for i in prediction.image_ids) / k
    return total / len(predictions)


def extract(encoder: Encoder, root: str | Path, split: str, output_dir: str | Path | None = None) -> ExtractReport:
    """Write {split}_imgs.img_feat.jsonl and {split}_texts.txt_feat.jsonl as cn_clip's extract_features.py does."""
    root = Path(root)
    out = Path(output_dir) if output_dir is not None else root
    out.mkdir(parents=True, exist_ok=True)
    texts = split_texts(root, split)
    source = open_source(root, split)
    if source.kind == "features":
        raise DatasetError("split_no_images", split=split, path=root)
    report = ExtractReport(image_features_file(out, split), text_features_file(out, split), 0, 0)
    with _replacing(report.image_features) as handle:
        def bad(record: Record, reason: RecordError) -> None:
            report.bad.append(BadRecord(record.line, reason, record.file))

        def readable() -> Iterator[Record]:
            for record in source.records:
                if record.error is None and record.image_id is not None and record.data is not None:
                    yield record
                else:
                    bad(record, record.error or RecordError("record_without_data"))

        batches = prepared_batches(readable(), lambda r: r.data or b"", encoder, on_bad=bad, batch_size=IMAGE_BATCH)
        for batch, vectors in encoder.encode_pixel_batches(batches):
            for prepared, vector in zip(batch, vectors.tolist()):
                handle.write(feature_line("image_id", int(prepared.item.image_id or 0), vector))
            report.images += len(batch)
    text_vectors = encode_texts(encoder, [t["text"] for t in texts])
    with _replacing(report.text_features) as handle:
        for entry, vector in zip(texts, text_vectors.tolist()):
            handle.write(feature_line("text_id", entry["text_id"], vector))
    report.texts = len(texts)
    return report


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[TextIO]:
    """Write to a temporary file, moved into place only when everything was written."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            yield handle
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)

