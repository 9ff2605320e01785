"""The one place the stores are built from settings: the engine and Ray's workers use it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from searchcore.config import Settings
from searchcore.stores.images import ImageStore, open_image_store
from searchcore.stores.vectors import Attrs, Frame, MilvusVectorStore, VectorStore, vector_rows


def open_vector_store(settings: Settings, *, exact_copy: bool = True) -> MilvusVectorStore:
    """Milvus Lite (a file, with its exact in-process copy unless turned off) or a Milvus server."""
    return MilvusVectorStore(settings.milvus_uri, settings.milvus_token, index=settings.index, exact_copy=exact_copy)


def open_stores(settings: Settings) -> tuple[MilvusVectorStore, ImageStore]:
    """Both stores; the image store's table is created if it is missing."""
    vectors = open_vector_store(settings)
    try:
        return vectors, open_image_store(settings.db_url)
    except BaseException:
        vectors.close()
        raise


class BulkRows:
    """A vector store whose upserts become rows of import files (pymilvus LocalBulkWriter) for Milvus to bulk
    insert; every read goes to the store it wraps."""

    def __init__(self, store: VectorStore, folder: str, writer_factory: Any) -> None:
        self._store = store
        self._folder = folder
        self._writer_factory = writer_factory  # (folder, dim) -> a LocalBulkWriter
        self._writer: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def upsert(self, library: str, ids: Sequence[int], vectors: np.ndarray,
               attrs: Sequence[Attrs] | None = None, frames: Sequence[Frame] | None = None) -> None:
        """Append rows to the current import files."""
        meta = self._store.meta(library)
        assert meta is not None
        if self._writer is None:
            self._writer = self._writer_factory(self._folder, meta.dim)
        array = np.asarray(vectors, dtype=np.float32)
        for row, vector in zip(vector_rows(ids, array, attrs, meta.filterable, frames, meta.videos), array):
            row["vector"] = vector
            self._writer.append_row(row)

    def take_files(self) -> list[list[str]]:
        """The import file sets written since the last call (one set per Milvus import task)."""
        if self._writer is None:
            return []
        self._writer.commit()
        files = [[str(f) for f in batch] for batch in self._writer.batch_files]
        self._writer = None
        return files
