"""The one place the stores are built from settings: the engine and Ray's workers use it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from searchcore.config import TEXT_INDEX_SUFFIX, Settings, is_server_uri
from searchcore.stores import snapshot
from searchcore.stores.exact_copy import LiteCopies
from searchcore.stores.filters import Filters
from searchcore.stores.image_db import ImageDb, open_image_store
from searchcore.stores.text_copy import TextCopy
from searchcore.stores.text_index import TextIndex
from searchcore.stores.vectors import (
    MILVUS_MAX_K,
    PREFIX,
    Attrs,
    Frame,
    Hit,
    LibraryMeta,
    MilvusVectorStore,
    VectorStore,
    vector_rows,
)

R = TypeVar("R")


def open_vector_store(settings: Settings, *, exact_copy: bool = True,
                      one_question: bool = False) -> MilvusVectorStore | SnapshotFirst:
    """Milvus Lite (a file, with its exact in-process copy unless turned off) or a Milvus server. one_question:
    a process that only searches the settings' library once, answered from the library's snapshot when it is
    current (Lite is not even started), else through Lite without an exact copy."""
    if one_question and not is_server_uri(settings.milvus_uri):
        return SnapshotFirst(settings, settings.library)
    return open_milvus(settings, exact_copy=exact_copy)


def open_milvus(settings: Settings, *, exact_copy: bool = True) -> MilvusVectorStore:
    """The settings' Milvus: Lite (a file, with its exact in-process copy unless turned off) or a server."""
    return MilvusVectorStore(settings.milvus_uri, settings.milvus_token, index=settings.index, exact_copy=exact_copy)


class SnapshotFirst:
    """A Lite store for one question about one library: its meta, searches and vectors come from the library's
    snapshot (stores/snapshot.py) when that is current when the store opens; everything else, and everything
    when there is no current snapshot, goes to Milvus Lite, opened on first need. Results equal Lite's up to
    the exact copy's SCORE_TOLERANCE."""

    def __init__(self, settings: Settings, library: str) -> None:
        self._settings = settings
        self.backend = "milvus-lite"
        self.server = False
        self.uri = settings.milvus_uri
        self.exact_copy = False  # one question: the keyword index is searched in Lite, not copied first
        self.library = library
        self.snapshot = snapshot.load(settings.milvus_uri, library)  # before Lite holds the folder's lock
        self._meta = None if self.snapshot is None else LibraryMeta(**self.snapshot.meta)
        self._milvus: MilvusVectorStore | None = None
        self._opening = threading.Lock()  # a hybrid search reads the keyword index on a thread of its own

    def lite(self) -> MilvusVectorStore:
        """Milvus Lite, opened on first need (without an exact copy: this process asks one question)."""
        with self._opening:
            if self._milvus is None:
                self._milvus = open_milvus(self._settings, exact_copy=False)
            return self._milvus

    def text_index(self) -> TextIndex | None:
        """The keyword index beside the library (Lite starts when it is first read), None when the snapshot says
        the library has none."""
        if self._meta is not None and self.snapshot is not None and not self.snapshot.text_index:
            return None
        return TextIndex(self)

    def run(self, what: str, action: Callable[[Any], R]) -> R:
        """As MilvusVectorStore.run, on Lite (the keyword index reads it through this)."""
        return self.lite().run(what, action)

    def text_collection(self, library: str) -> str:
        return PREFIX + library + TEXT_INDEX_SUFFIX

    @property
    def text_copies(self) -> LiteCopies[TextCopy] | None:
        """The keyword indexes' copies that Lite's stores in this process share, kept in step by any write."""
        return self.lite().text_copies

    def _answers(self, library: str) -> bool:
        return self._meta is not None and library == self.library

    def meta(self, library: str) -> LibraryMeta | None:
        return self._meta if self._answers(library) else self.lite().meta(library)

    def search(self, library: str, vectors: np.ndarray, top_k: int,
               filters: Filters | None = None) -> list[list[Hit]]:
        """As Lite searches, from the snapshot's exact copy when it holds the library (and the question is one
        Lite would take: the library's dimension, a k Lite allows, filters on a library that has their fields)."""
        queries = np.asarray(vectors, dtype=np.float32)
        meta = self._meta
        if self._answers(library) and self.snapshot is not None and meta is not None \
                and queries.ndim == 2 and queries.shape[1] == meta.dim and 0 < top_k <= MILVUS_MAX_K \
                and (not filters or meta.filterable and (filters.media is None or meta.videos)):
            found = self.snapshot.copy.search(queries, top_k, filters.mask if filters else None)
            return [[Hit(i, s) for i, s in hits] for hits in found]
        return self.lite().search(library, vectors, top_k, filters)

    def vectors(self, library: str, ids: Sequence[int]) -> dict[int, np.ndarray]:
        if self._answers(library) and self.snapshot is not None:
            return self.snapshot.copy.get(ids)
        return self.lite().vectors(library, ids)

    def count(self, library: str) -> int:
        if self._answers(library) and self.snapshot is not None:
            return len(self.snapshot.copy)
        return self.lite().count(library)

    def open_library(self, library: str, model: str, dim: int, *, create: bool, model_file: str = "",
                     digest: str = "") -> LibraryMeta:
        self._meta = None  # this process writes: the snapshot no longer answers
        return self.lite().open_library(library, model, dim, create=create, model_file=model_file, digest=digest)

    def libraries(self) -> list[LibraryMeta]:
        return self.lite().libraries()

    def upsert(self, library: str, ids: Sequence[int], vectors: np.ndarray,
               attrs: Sequence[Attrs] | None = None, frames: Sequence[Frame] | None = None) -> None:
        self._meta = None  # this process writes: the snapshot no longer answers
        self.lite().upsert(library, ids, vectors, attrs, frames)

    def flush(self, library: str) -> None:
        self.lite().flush(library)

    def attrs(self, library: str, ids: Sequence[int]) -> dict[int, Attrs]:
        return self.lite().attrs(library, ids)

    def rebuild(self, library: str, attrs: Callable[[list[int]], dict[int, Attrs]], staging: Path,
                frames: Callable[[list[int]], dict[int, Frame]] | None = None) -> None:
        self._meta = None  # this process writes: the snapshot no longer answers
        self.lite().rebuild(library, attrs, staging, frames)

    def check_copy(self, library: str) -> str | None:
        return self.lite().check_copy(library)

    def existing(self, library: str, ids: Sequence[int]) -> set[int]:
        return self.lite().existing(library, ids)

    def ids(self, library: str) -> Iterator[int]:
        return self.lite().ids(library)

    def delete(self, library: str, ids: Sequence[int]) -> None:
        self._meta = None  # this process writes: the snapshot no longer answers
        self.lite().delete(library, ids)

    def drop(self, library: str) -> None:
        self._meta = None  # this process writes: the snapshot no longer answers
        self.lite().drop(library)

    def close(self) -> None:
        if self._milvus is not None:
            self._milvus.close()


@dataclass
class Stores:
    """The stores one engine (or one Ray worker) holds: vectors, images, and the keyword index beside the vectors
    (None where the vector store has none)."""

    vectors: VectorStore
    images: ImageDb
    texts: TextIndex | None

    def close(self) -> None:
        """Release both stores (the keyword index lives in the vector store's Milvus)."""
        try:
            self.vectors.close()
        finally:
            self.images.close()


def open_stores(settings: Settings, *, exact_copy: bool = True, one_question: bool = False,
                vectors: VectorStore | None = None, images: ImageDb | None = None) -> Stores:
    """The stores the settings describe (see open_vector_store); a store given is used as it is, not built. The
    image store's table is created if it is missing."""
    vector_store = vectors if vectors is not None else open_vector_store(
        settings, exact_copy=exact_copy, one_question=one_question)
    try:
        image_store = images if images is not None else open_image_store(settings.db_url)
    except BaseException:
        vector_store.close()
        raise
    return Stores(vector_store, image_store, text_index(vector_store))


def text_index(vectors: VectorStore) -> TextIndex | None:
    """The keyword index in the same Milvus as the vectors (a stand-in vector store has none)."""
    if isinstance(vectors, SnapshotFirst):
        return vectors.text_index()
    return TextIndex(vectors) if isinstance(vectors, MilvusVectorStore) else None


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
