"""Ingest's third stage: each read batch turned into its vectors, one normalised row per item.

Pictures go through the encoder's image tower; a feature file brings its own vectors, which are normalised and
checked against the library's model (a batch of another width is reported bad and left out).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from searchcore.errors import RecordError
from searchcore.indexing.plan import Work
from searchcore.models.encoder import Encoder
from searchcore.models.preprocess import normalise
from searchcore.records import BadRecord

if TYPE_CHECKING:
    from searchcore.indexing.report import IngestReport


def encode(batches: Iterable[tuple[list[Work], Any]], encoder: Encoder) -> Iterator[tuple[list[Work], np.ndarray]]:
    """Each batch beside its image vectors, streamed through the encoder's runtime."""
    yield from encoder.encode_pixel_batches(batches)


def features(batches: Iterable[tuple[list[Work], Any]], dim: int,
             report: IngestReport) -> Iterator[tuple[list[Work], np.ndarray]]:
    """Each batch beside its records' own vectors, normalised; a batch whose width is not dim is reported bad."""
    for batch, _ in batches:
        vecs = normalise(np.stack([w.record.vector for w in batch]))  # type: ignore[misc]
        yield check_dims(batch, vecs, dim, report)


def check_dims(batch: list[Work], vecs: np.ndarray, dim: int, report: IngestReport) -> tuple[list[Work], np.ndarray]:
    """The batch and its vectors if they have dim columns; else nothing, and each of its records reported bad."""
    if vecs.shape[1] == dim:
        return batch, vecs
    for w in batch:
        report.bad.append(BadRecord(w.record.line, RecordError("record_feature_dims", dims=vecs.shape[1],
                                                               model_dims=dim), w.record.file))
    return [], vecs[:0]
