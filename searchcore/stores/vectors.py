"""The vector store: one Milvus collection per library, Milvus Lite file or server URI."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from searchcore.config import BUILD_SUFFIX, LIVE_SUFFIX, TEXT_INDEX_SUFFIX, is_server_uri, validate_library
from searchcore.errors import BackendUnavailableError, LibraryError, LibraryLockedError, SearchcoreError
from searchcore.ids import id_chunks
from searchcore.stores.exact_copy import ExactCopy, LiteCopies
from searchcore.stores.filters import Filters
from searchcore.stores.snapshot import discard, lite_locked, save
from searchcore.stores.text_copy import TextCopy

log = logging.getLogger(__name__)
R = TypeVar("R")

PREFIX = "searchcore_"
HNSW_PARAMS = {"M": 16, "efConstruction": 200}
HNSW_EF = 128
IVF_NPROBE = 32  # Milvus's default of 10 gave recall@10 of 0.75 with nlist=1024
ID_BATCH = 1000
MILVUS_MAX_K = 16384  # Milvus's own limit on a search's k (search.MAX_TOP_K is far below it)
MAX_PATH_CHARS = 1024  # the `path` field's VARCHAR length (Milvus counts bytes: paths are cut to fit)
ATTR_FIELDS = ("path", "taken")  # the scalar fields searches filter on
VIDEO_FIELDS = ("video_id", "time_s")  # a video frame's video and time (0 and 0.0 for a picture)
Attrs = tuple[str, int]  # (relative path, taken) of one image; ("", 0) for dataset images
NO_ATTRS: Attrs = ("", 0)
Frame = tuple[int, float]  # (video id, time in seconds) of a video frame; (0, 0.0) for a picture
NO_FRAME: Frame = (0, 0.0)
COPY_CHECK_ALL = 10_000  # `check_copy` compares every vector of a library up to this size...
COPY_SAMPLE = 1000  # ...and this many random ones beyond it
_LITE_STORES: dict[str, int] = {}  # Milvus Lite file -> stores open on it in this process
_LITE_COPIES: dict[str, LiteCopies[ExactCopy]] = {}  # Milvus Lite file -> the exact copies its stores share
_LITE_TEXT_COPIES: dict[str, LiteCopies[TextCopy]] = {}  # ... and the copies of its keyword indexes


@dataclass(frozen=True)
class LibraryMeta:
    """What a collection records about its library."""

    library: str
    model: str
    dim: int
    index: str
    index_params: dict[str, Any]
    filterable: bool = True  # has the path and taken fields (libraries made before them lack them)
    videos: bool = True  # has the video_id and time_s fields (libraries made before videos lack them)
    model_file: str = ""  # the weights file the model was loaded from (libraries made before it lack it)
    digest: str = ""  # the weights file's sha256
    collection: str = ""  # the Milvus collection holding its vectors now


@dataclass(frozen=True)
class Hit:
    """One vector search result."""

    image_id: int
    score: float


class VectorStore(Protocol):
    """What the engine needs from a vector store."""

    backend: str

    def open_library(self, library: str, model: str, dim: int, *, create: bool, model_file: str = "",
                     digest: str = "") -> LibraryMeta: ...
    def meta(self, library: str) -> LibraryMeta | None: ...
    def libraries(self) -> list[LibraryMeta]: ...
    def upsert(self, library: str, ids: Sequence[int], vectors: np.ndarray,
               attrs: Sequence[Attrs] | None = None, frames: Sequence[Frame] | None = None) -> None: ...
    def flush(self, library: str) -> None: ...
    def search(self, library: str, vectors: np.ndarray, top_k: int,
               filters: Filters | None = None) -> list[list[Hit]]: ...
    def attrs(self, library: str, ids: Sequence[int]) -> dict[int, Attrs]: ...
    def rebuild(self, library: str, attrs: Callable[[list[int]], dict[int, Attrs]], staging: Path,
                frames: Callable[[list[int]], dict[int, Frame]] | None = None) -> None: ...
    def check_copy(self, library: str) -> str | None: ...
    def existing(self, library: str, ids: Sequence[int]) -> set[int]: ...
    def vectors(self, library: str, ids: Sequence[int]) -> dict[int, np.ndarray]: ...
    def ids(self, library: str) -> Iterator[int]: ...
    def delete(self, library: str, ids: Sequence[int]) -> None: ...
    def count(self, library: str) -> int: ...
    def drop(self, library: str) -> None: ...
    def close(self) -> None: ...


def collection_schema(dim: int) -> Any:
    """A library's Milvus schema (bulk-insert files use it too): an INT64 image id, its FLOAT_VECTOR, and the
    scalar fields searches filter on inside Milvus: the relative path, when it was taken, and for a video frame
    its video and time."""
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("path", DataType.VARCHAR, max_length=MAX_PATH_CHARS)
    schema.add_field("taken", DataType.INT64)
    schema.add_field("video_id", DataType.INT64)
    schema.add_field("time_s", DataType.FLOAT)
    return schema


def vector_rows(ids: Sequence[int], vectors: np.ndarray, attrs: Sequence[Attrs] | None,
                filterable: bool = True, frames: Sequence[Frame] | None = None,
                videos: bool = False) -> list[dict[str, Any]]:
    """Milvus rows for an upsert or an import file (with videos, each with its video fields)."""
    array = np.asarray(vectors, dtype=np.float32)
    rows: list[dict[str, Any]] = [{"id": int(i), "vector": v} for i, v in zip(ids, array.tolist())]
    if filterable:
        for row, (path, taken) in zip(rows, attrs if attrs is not None else [NO_ATTRS] * len(rows)):
            row["path"], row["taken"] = fit_path(path), int(taken)
    if videos:
        for row, (video_id, time_s) in zip(rows, frames if frames is not None else [NO_FRAME] * len(rows)):
            row["video_id"], row["time_s"] = int(video_id), float(time_s)
    return rows


def fit_path(path: str) -> str:
    """A relative path cut to the `path` field's length (in bytes, as Milvus counts it)."""
    data = path.encode()
    return path if len(data) <= MAX_PATH_CHARS else data[:MAX_PATH_CHARS].decode(errors="ignore")


class MilvusVectorStore:
    """Milvus through pymilvus MilvusClient; the same code serves Lite and servers.

    On Lite, FLAT libraries are searched from an exact in-process copy of their vectors (stores/exact_copy.py)
    once it is loaded, in the background, on the library's first open or search; until then, and with
    exact_copy=False, searches go to Milvus. Every write updates the copy, and `check_copy` verifies it.
    """

    def __init__(self, uri: str, token: str = "", *, index: str = "auto", connect_timeout: float = 60,
                 exact_copy: bool = True) -> None:
        self.uri = uri
        self.server = is_server_uri(uri)
        self.backend = "milvus-server" if self.server else "milvus-lite"
        self.index = index
        self.exact_copy = exact_copy and not self.server
        self._metas: dict[str, LibraryMeta] = {}
        self._names: dict[str, str] = {}  # library -> the name its vectors are reached by (collection or alias)
        self._lock = threading.Lock()
        self._client = self._connect(token, connect_timeout)
        # Every Lite store of this process on the file keeps the shared copies in step, even with exact_copy off.
        key = os.path.abspath(Path(uri).expanduser())
        self._copies = None if self.server else _LITE_COPIES.setdefault(key, LiteCopies())
        # the keyword indexes' copies (stores/text_copy.py), which TextIndex keeps in step the same way
        self.text_copies = None if self.server else _LITE_TEXT_COPIES.setdefault(key, LiteCopies())

    def _connect(self, token: str, timeout: float) -> Any:
        from pymilvus import MilvusClient

        # pymilvus logs every failed RPC with a traceback (and its import resets its level); the engine
        # reports failures itself.
        for noisy in ("pymilvus", "grpc._server", "milvus_lite"):
            logging.getLogger(noisy).setLevel(logging.CRITICAL)
        if not self.server:
            path = Path(self.uri).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                client = MilvusClient(str(path))
                key = os.path.abspath(path)
                _LITE_STORES[key] = _LITE_STORES.get(key, 0) + 1
                return client
            except Exception as exc:
                if _is_lock_error(exc) or lite_locked(path):
                    raise LibraryLockedError("library_locked", path=path) from exc
                raise BackendUnavailableError("lite_unopenable", path=path, reason=str(exc)) from exc
        deadline = time.monotonic() + timeout
        delay = 0.5
        while True:
            try:
                # never wait on one attempt past the deadline (a silent host makes each attempt block)
                attempt = max(1.0, min(10.0, deadline - time.monotonic()))
                return MilvusClient(uri=self.uri, token=token, timeout=attempt)
            except Exception as exc:
                if time.monotonic() + delay > deadline:
                    raise BackendUnavailableError("milvus_unavailable", uri=self.uri, timeout=timeout,
                                                  reason=str(exc)) from exc
                log.warning("Milvus server %s not ready (%s); retrying in %.1fs", self.uri, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 8)

    def run(self, what: str, action: Callable[[Any], R]) -> R:
        """Run action(pymilvus client) on this store's Milvus, its failure a BackendUnavailableError naming what
        failed (the text index keeps its collections in the same Milvus)."""
        return self._call(what, lambda: action(self._client))

    def text_collection(self, library: str) -> str:
        """The name of the collection kept beside a library's vectors for its keyword index (never a library)."""
        return PREFIX + library + TEXT_INDEX_SUFFIX

    def _call(self, what: str, fn: Callable[[], R]) -> R:
        try:
            return fn()
        except SearchcoreError:
            raise
        except Exception as exc:
            self._metas.clear()  # a restarted server reloads collections: check (and load) them again next call
            self._names.clear()  # ... and another process may have switched a library to a new collection
            raise BackendUnavailableError("vector_store_failed", uri=self.uri, action=what, reason=str(exc)) from exc

    def _index_for(self) -> tuple[str, dict[str, Any]]:
        index = self.index
        if index == "auto":
            index = "HNSW" if self.server else "FLAT"
        params = dict(HNSW_PARAMS) if index == "HNSW" else {"nlist": 1024} if index == "IVF_FLAT" else {}
        return index, params

    def open_library(self, library: str, model: str, dim: int, *, create: bool, model_file: str = "",
                     digest: str = "") -> LibraryMeta:
        """Open (or create) a library's collection, refusing one made with another model; a new one records the
        model's weights file and digest, from which the library's own model is loaded again later."""
        validate_library(library)
        meta = self.meta(library)
        if meta is None:
            if not create:
                raise LibraryError("library_missing_ingest", library=library)
            return self._create(library, model, dim, model_file, digest)
        if meta.model != model or meta.dim != dim:
            raise LibraryError("library_model_mismatch", library=library, model=meta.model, dim=meta.dim,
                               wanted_model=model, wanted_dim=dim)
        self._load_copy(library, meta)
        return meta

    def _create(self, library: str, model: str, dim: int, model_file: str = "", digest: str = "") -> LibraryMeta:
        with self._lock, self._writing(library):
            index = self._create_collection(PREFIX + library, library, model, dim, model_file, digest)
            self._names[library] = PREFIX + library
            if self._copies is not None and index == "FLAT":
                self._copies.create_empty(library, ExactCopy(dim), id(self))
        log.info("created library %s (%s, %d-d)", library, model, dim)
        self._metas.pop(library, None)
        meta = self.meta(library)
        assert meta is not None
        return meta

    def _create_collection(self, name: str, library: str, model: str, dim: int, model_file: str,
                           digest: str) -> str:
        """Create a collection of a library's vectors, recording its model; the index type made."""
        index, params = self._index_for()
        schema = collection_schema(dim)
        index_params = self._client.prepare_index_params()
        index_params.add_index(field_name="vector", index_type=index, metric_type="IP", params=params)
        properties = {
            "searchcore.library": library,
            "searchcore.model": model,
            "searchcore.dim": str(dim),
            "searchcore.index": json.dumps({"type": index, "params": params}),
            "searchcore.model_file": model_file,
            "searchcore.digest": digest,
        }
        self._call("create the collection", lambda: self._client.create_collection(
            name, schema=schema, index_params=index_params, consistency_level="Strong", properties=properties))
        return index

    def _name(self, library: str) -> str:
        """The name a library's vectors are reached by: the alias of a reindexed library, else its collection."""
        cached = self._names.get(library)
        if cached is not None:
            return cached
        alias = PREFIX + library + LIVE_SUFFIX
        name = alias if self._call("list collections", lambda: self._client.has_collection(alias)) \
            else PREFIX + library
        self._names[library] = name
        return name

    def live_collection(self, library: str) -> str | None:
        """The collection a library's searches read now (behind its alias, once reindexed); None without one."""
        meta = self.meta(library)
        return meta.collection if meta is not None else None

    def builds(self, library: str) -> dict[str, LibraryMeta]:
        """The collections of a library other than its live one (reindexes under way or finished), by name."""
        validate_library(library)
        live = self.live_collection(library)
        pattern = re.compile(re.escape(PREFIX + library) + "(" + BUILD_SUFFIX + "[0-9]+)?$")
        found = {}
        for name in self._call("list collections", self._client.list_collections):
            if pattern.fullmatch(name) and name != live:
                desc = self._describe(name)
                found[name] = _meta_from(library, desc, name)
        return found

    def _describe(self, name: str) -> dict[str, Any]:
        return self._call("describe the collection", lambda: self._client.describe_collection(name))

    def create_build(self, library: str, model: str, dim: int, model_file: str = "", digest: str = "") -> str:
        """A new empty collection beside a library's live one, for its vectors by another model; its name."""
        numbers = [int(n.rsplit(BUILD_SUFFIX, 1)[1]) for n in [*self.builds(library), self.live_collection(library)]
                   if n and n != PREFIX + library and BUILD_SUFFIX in n]
        name = f"{PREFIX}{library}{BUILD_SUFFIX}{max(numbers, default=0) + 1}"
        self._create_collection(name, library, model, dim, model_file, digest)
        return name

    def build_upsert(self, collection: str, ids: Sequence[int], vectors: np.ndarray,
                     attrs: Sequence[Attrs] | None = None, frames: Sequence[Frame] | None = None) -> None:
        """Write vectors to a collection being built (no search reads it, no copy follows it)."""
        rows = vector_rows(ids, np.asarray(vectors, dtype=np.float32), attrs, True, frames, True)
        if rows:
            self._call("upsert vectors", lambda: self._client.upsert(collection, rows))

    def build_delete(self, collection: str, ids: list[int]) -> None:
        """Remove vectors from a collection being built."""
        for chunk in id_chunks(ids, ID_BATCH):
            self._call("delete vectors", lambda c=chunk: self._client.delete(  # type: ignore[misc]
                collection, ids=c))

    def collection_ids(self, collection: str) -> Iterator[int]:
        """Every id with a vector in a collection (loaded first: a resumed reindex finds it released), in pages."""
        state = self._call("get the load state", lambda: self._client.get_load_state(collection))
        if "Loaded" not in str(state.get("state", "")):
            self._call("load the collection", lambda: self._client.load_collection(collection))
        return self._ids(collection)

    def flush_collection(self, collection: str) -> None:
        """Seal a collection's fresh vectors."""
        self._call("flush", lambda: self._client.flush(collection))

    def drop_collection(self, collection: str) -> None:
        """Remove one collection (a finished or abandoned reindex's; never a library's live one)."""
        if self._call("list collections", lambda: self._client.has_collection(collection)):
            self._call("drop the collection", lambda: self._client.drop_collection(collection))

    def switch(self, library: str, collection: str) -> None:
        """Make a built collection the library's live one in one step (its alias moves), then reload the exact
        copy from it; no write of the library runs meanwhile, and its saved snapshot is discarded."""
        alias = PREFIX + library + LIVE_SUFFIX
        with self._lock, self._writing(library):
            if self._copies is not None:
                self._copies.invalidate(library)
            if self._call("list collections", lambda: self._client.has_collection(alias)):
                self._call("move the alias", lambda: self._client.alter_alias(collection, alias))
            else:
                self._call("create the alias", lambda: self._client.create_alias(collection, alias))
            self._metas.pop(library, None)
            self._names[library] = alias
        if not self.server:
            discard(self.uri, library)
        meta = self.meta(library)
        if meta is not None:
            self._load_copy(library, meta)

    def meta(self, library: str) -> LibraryMeta | None:
        """The library's recorded model, dim and index, or None when it does not exist."""
        validate_library(library)
        cached = self._metas.get(library)  # one lookup: another thread may clear the cache (see _call)
        if cached is not None:
            return cached
        name = self._name(library)
        if not self._call("list collections", lambda: self._client.has_collection(name)):
            return None
        desc = self._call("describe the collection", lambda: self._client.describe_collection(name))
        meta = _meta_from(library, desc, str(desc.get("collection_name") or name))
        state = self._call("get the load state", lambda: self._client.get_load_state(name))
        if "Loaded" not in str(state.get("state", "")):
            self._call("load the collection", lambda: self._client.load_collection(name))
        self._metas[library] = meta
        return meta

    def libraries(self) -> list[LibraryMeta]:
        """Every library this store holds."""
        names = self._call("list collections", self._client.list_collections)
        # a reindexed library's collections carry a suffix; each library is listed once, by its live collection
        libraries = {re.sub(re.escape(BUILD_SUFFIX) + "[0-9]+$", "", name[len(PREFIX):]) for name in names
                     if name.startswith(PREFIX) and not name.endswith(TEXT_INDEX_SUFFIX)}
        metas = []
        for library in sorted(libraries):
            meta = self.meta(library)
            if meta is not None:
                metas.append(meta)
        return metas

    def upsert(self, library: str, ids: Sequence[int], vectors: np.ndarray,
               attrs: Sequence[Attrs] | None = None, frames: Sequence[Frame] | None = None) -> None:
        """Insert or replace vectors by image id, with each image's (path, taken) and a video frame's (video id,
        time) for filters; a library made before videos refuses frames (LibraryError naming migrate)."""
        meta = self.meta(library)
        videos = meta is None or meta.videos
        if frames is not None and not videos and any(video for video, _ in frames):
            raise LibraryError("library_needs_migrate_videos", library=library)
        array = np.asarray(vectors, dtype=np.float32)
        rows = vector_rows(ids, array, attrs, meta is None or meta.filterable, frames, videos)
        if rows:
            with self._writing(library):
                self._call("upsert vectors", lambda: self._client.upsert(self._name(library), rows))
                if self._copies is not None:
                    self._copies.upserted(library, [r["id"] for r in rows], array[:len(rows)],
                                          attrs=[(r.get("path", ""), r.get("taken", 0)) for r in rows],
                                          videos=[r.get("video_id", 0) for r in rows])

    def flush(self, library: str) -> None:
        """Seal fresh vectors so searches over them are fast and durable."""
        self._call("flush", lambda: self._client.flush(self._name(library)))

    def search(self, library: str, vectors: np.ndarray, top_k: int,
               filters: Filters | None = None) -> list[list[Hit]]:
        """Inner-product top-k for each query vector, best first; filters are applied inside the search."""
        meta = self.meta(library)
        if meta is None:
            raise LibraryError("library_missing_ingest", library=library)
        if filters and not meta.filterable:
            raise LibraryError("library_needs_migrate", library=library)
        queries = np.asarray(vectors, dtype=np.float32)
        if filters and filters.media is not None and not meta.videos:
            # made before videos: every row is a picture
            if filters.media == "video":
                return [[] for _ in range(len(queries))]
            filters = dataclasses.replace(filters, media=None)
        copy = self._copies.ready(library) if self._copies is not None and self.exact_copy else None
        # anything Milvus would refuse (a wrong dimension, a k out of range) goes to Milvus, which says why
        if copy is not None and meta.index == "FLAT" and queries.ndim == 2 and queries.shape[1] == meta.dim \
                and 0 < top_k <= MILVUS_MAX_K:
            found = copy.search(queries, top_k, filters.mask if filters else None)
            return [[Hit(i, s) for i, s in hits] for hits in found]
        self._load_copy(library, meta)
        params: dict[str, Any] = {"metric_type": "IP"}
        if meta.index == "HNSW":
            params["params"] = {"ef": max(HNSW_EF, top_k)}
        elif meta.index == "IVF_FLAT":
            params["params"] = {"nprobe": IVF_NPROBE}
        data = queries.tolist()
        # Session, not the collection's Strong: a server makes a Strong read wait for the next time tick
        # (200 ms); Session still shows this client its own writes (bench/bench_query.py measures both).
        expression = filters.expression() if filters else ""
        result = self._call("search", lambda: self._client.search(
            self._name(library), data=data, limit=top_k, search_params=params, output_fields=[],
            consistency_level="Session", filter=expression))
        return [[Hit(int(h["id"]), float(h["distance"])) for h in hits] for hits in result]

    def copy_status(self, library: str) -> str:
        """The library's exact copy: 'off' (a server, or exact_copy=False), 'absent', 'loading' or 'ready'."""
        if self._copies is None or not self.exact_copy:
            return "off"
        return self._copies.status(library)

    def wait_for_copy(self, library: str, timeout: float = 60) -> bool:
        """Wait until the library's exact copy serves searches; False when it does not within the timeout."""
        deadline = time.monotonic() + timeout
        while self.copy_status(library) != "ready":
            if self.copy_status(library) != "loading" or time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def check_copy(self, library: str) -> str | None:
        """Compare the library's exact copy with Milvus (loading it first if need be); on a mismatch, reload
        it and return what differed. None when they agree or the library has no copy (server, off, not FLAT)."""
        meta = self.meta(library)
        if self._copies is None or not self.exact_copy or meta is None or meta.index != "FLAT":
            return None
        with self._copies.write_lock:  # no write between reading Milvus and reading the copy
            copy = self._copies.ready(library)
            if copy is None:
                self._reload_copy(library, meta)
                copy = self._copies.ready(library)
            if copy is None:
                return "the exact copy could not be loaded; searches go to Milvus"
            problem = self._copy_problem(library, copy)
            if problem is not None:
                log.warning("library %s: %s; reloading the copy from Milvus", library, problem)
                self._reload_copy(library, meta)
            return problem

    def _copy_problem(self, library: str, copy: ExactCopy) -> str | None:
        stored = np.fromiter(self.ids(library), dtype=np.int64)
        held = copy.ids()
        missing, extra = np.setdiff1d(stored, held), np.setdiff1d(held, stored)
        if len(stored) != len(held) or missing.size or extra.size:
            return (f"the exact copy holds {len(held)} vectors and Milvus {len(stored)} ({missing.size} missing "
                    f"from the copy, {extra.size} not in Milvus)")
        sample = held if len(held) <= COPY_CHECK_ALL else np.random.default_rng().choice(held, COPY_SAMPLE, False)
        truth = self.vectors(library, sample.tolist(), from_copy=False)
        mine = copy.get(sample.tolist())
        differ = len([i for i, v in truth.items() if i not in mine or not np.array_equal(v, mine[i])])
        if differ:
            return f"{differ} of {len(sample)} vectors compared differ between the exact copy and Milvus"
        return None

    def _load_copy(self, library: str, meta: LibraryMeta) -> None:
        """Start loading a FLAT Lite library's copy in the background (searches go to Milvus meanwhile)."""
        if self._copies is not None and self.exact_copy and meta.index == "FLAT" \
                and self._copies.status(library) == "absent":
            self._copies.load_in_background(library, ExactCopy(meta.dim),
                                            lambda cancel: self._copy_pages(library, cancel), id(self),
                                            size=lambda: self.count(library))

    def _reload_copy(self, library: str, meta: LibraryMeta) -> None:
        assert self._copies is not None
        self._copies.reload(library, ExactCopy(meta.dim), lambda cancel: self._copy_pages(library, cancel), id(self),
                            size=lambda: self.count(library))

    def _copy_pages(self, library: str, cancel: threading.Event
                    ) -> Iterator[tuple[list[int], np.ndarray, list[Attrs], list[int]]]:
        """Every (id, vector, attrs) of a library, in pages, for its exact copy."""
        meta = self.meta(library)
        name = self._name(library)
        fields = ["id", "vector", *(ATTR_FIELDS if meta is not None and meta.filterable else ()),
                  *(VIDEO_FIELDS[:1] if meta is not None and meta.videos else ())]
        iterator = self._call("read vectors", lambda: self._client.query_iterator(
            name, batch_size=ID_BATCH, filter="id >= -9223372036854775807", output_fields=fields))
        try:
            while not cancel.is_set():
                page = self._call("read vectors", iterator.next)
                if not page:
                    return
                yield ([int(r["id"]) for r in page], np.asarray([r["vector"] for r in page], dtype=np.float32),
                       [(r.get("path", ""), int(r.get("taken", 0))) for r in page],
                       [int(r.get("video_id", 0)) for r in page])
        finally:
            with contextlib.suppress(Exception):  # a dropped collection's iterator may fail to close
                iterator.close()

    @contextlib.contextmanager
    def _writing(self, library: str) -> Iterator[None]:
        """Hold the copies' write lock around a write; forget the copy when the write's outcome is unknown."""
        if self._copies is None:
            yield
            return
        with self._copies.writing(library):
            yield

    def existing(self, library: str, ids: Sequence[int]) -> set[int]:
        """The ids among these that have a vector."""
        found: set[int] = set()
        for chunk in id_chunks(ids, ID_BATCH) if self.meta(library) is not None else []:
            rows = self._call("query ids", lambda c=chunk: self._client.query(  # type: ignore[misc]
                self._name(library), filter=f"id in {c}", output_fields=["id"]))
            found.update(int(r["id"]) for r in rows)
        return found

    def vectors(self, library: str, ids: Sequence[int], *, from_copy: bool = True) -> dict[int, np.ndarray]:
        """Stored vectors by id (from the in-process exact copy when it is loaded: a search's hits in well under
        a millisecond, where Milvus Lite's get takes tens). from_copy=False reads Milvus itself: the check of the
        copy and the migration need the stored truth, not the copy."""
        copy = self._copies.ready(library) if from_copy and self._copies is not None and self.exact_copy else None
        if copy is not None:
            return copy.get(ids)
        found: dict[int, np.ndarray] = {}
        for chunk in id_chunks(ids, ID_BATCH) if self.meta(library) is not None else []:
            rows = self._call("fetch vectors", lambda c=chunk: self._client.get(  # type: ignore[misc]
                self._name(library), ids=c, output_fields=["id", "vector"]))
            for r in rows:
                found[int(r["id"])] = np.asarray(r["vector"], dtype=np.float32)
        return found

    def attrs(self, library: str, ids: Sequence[int]) -> dict[int, Attrs]:
        """The (path, taken) stored with vectors, by id (empty for a library without those fields)."""
        meta = self.meta(library)
        found: dict[int, Attrs] = {}
        for chunk in id_chunks(ids, ID_BATCH) if meta is not None and meta.filterable else []:
            rows = self._call("fetch attributes", lambda c=chunk: self._client.get(  # type: ignore[misc]
                self._name(library), ids=c, output_fields=["id", *ATTR_FIELDS]))
            for r in rows:
                found[int(r["id"])] = (r["path"], int(r["taken"]))
        return found

    def rebuild(self, library: str, attrs: Callable[[list[int]], dict[int, Attrs]], staging: Path,
                frames: Callable[[list[int]], dict[int, Frame]] | None = None) -> None:
        """Re-create a library's collection with the current schema, keeping its vectors and settings (each
        image's attrs, and a video frame's video and time, come from the callbacks).

        The vectors are first saved to a staging file (written whole, then renamed), then the collection is
        dropped, made anew and refilled from the file with each image's attrs; the file goes last. A crash at
        any point leaves either the old collection or the staging file, from which a re-run finishes."""
        if not staging.exists():
            meta = self.meta(library)
            assert meta is not None
            ids = list(self.ids(library))
            found = self.vectors(library, ids, from_copy=False)
            matrix = np.stack([found[i] for i in ids]) if ids else np.zeros((0, meta.dim), np.float32)
            staging.parent.mkdir(parents=True, exist_ok=True)
            partial = staging.with_suffix(".partial.npz")
            with partial.open("wb") as out:
                np.savez(out, ids=np.asarray(ids, dtype=np.int64), vectors=matrix,
                         meta=np.asarray(json.dumps([meta.model, meta.dim, meta.index, meta.model_file,
                                                     meta.digest])))
            os.replace(partial, staging)
        saved = np.load(staging)
        model, dim, index, *origin = json.loads(str(saved["meta"]))  # a staging file of before: no origin
        ids_saved, vectors = saved["ids"].tolist(), saved["vectors"]
        self.drop(library)
        previous, self.index = self.index, index
        try:
            self._create(library, model, int(dim), *origin)
        finally:
            self.index = previous
        for start in range(0, len(ids_saved), ID_BATCH):
            chunk = ids_saved[start:start + ID_BATCH]
            known = attrs(chunk)
            video = frames(chunk) if frames is not None else {}
            self.upsert(library, chunk, vectors[start:start + ID_BATCH], [known.get(i, NO_ATTRS) for i in chunk],
                        [video.get(i, NO_FRAME) for i in chunk])
        self.flush(library)
        staging.unlink()
        log.info("library %s rebuilt with the current schema: %d vectors kept", library, len(ids_saved))

    def ids(self, library: str) -> Iterator[int]:
        """Every id with a vector, in pages."""
        if self.meta(library) is None:  # also loads a collection that a reopened store finds released
            return
        yield from self._ids(self._name(library))

    def _ids(self, name: str) -> Iterator[int]:
        iterator = self._call("list ids", lambda: self._client.query_iterator(
            name, batch_size=ID_BATCH * 5, filter="id >= -9223372036854775807", output_fields=["id"]))
        try:
            while True:
                page = self._call("list ids", iterator.next)
                if not page:
                    return
                yield from (int(r["id"]) for r in page)
        finally:
            iterator.close()

    def delete(self, library: str, ids: Sequence[int]) -> None:
        """Remove vectors by id."""
        for chunk in id_chunks(ids, ID_BATCH) if self.meta(library) is not None else []:
            with self._writing(library):
                self._call("delete vectors", lambda c=chunk: self._client.delete(  # type: ignore[misc]
                    self._name(library), ids=c))
                if self._copies is not None:
                    self._copies.deleted(library, chunk)

    def count(self, library: str) -> int:
        """Number of vectors in a library (0 when it does not exist)."""
        if self.meta(library) is None:
            return 0
        rows = self._call("count", lambda: self._client.query(
            self._name(library), filter="", output_fields=["count(*)"]))
        return int(rows[0]["count(*)"])

    def drop(self, library: str) -> None:
        """Remove a library's collections (its live one, and any a reindex left) and its alias."""
        validate_library(library)
        live = self.live_collection(library)
        others = list(self.builds(library))
        self._metas.pop(library, None)
        self._names.pop(library, None)
        alias = PREFIX + library + LIVE_SUFFIX
        with self._writing(library):
            if self._copies is not None:
                self._copies.invalidate(library)
            if live is not None and live != PREFIX + library:
                self._call("drop the alias", lambda: self._client.drop_alias(alias))
            for name in [n for n in (live, *others) if n]:
                self.drop_collection(name)

    def close(self) -> None:
        """Release the client (and the Lite file lock, once the last store on the file in this process closes)."""
        if self._client is None:
            return
        for copies in (self._copies, self.text_copies):
            if copies is not None:
                copies.stop(id(self))  # its loads read through this client
        ready = self._snapshots_to_save()
        self._client.close()
        self._client = None
        if not self.server:
            _release_lite(str(Path(self.uri).expanduser()))
        for library, (meta, text_index, copy) in ready.items():
            try:
                save(self.uri, library, meta, text_index, copy)
            except OSError as exc:  # a CLI search then reads Lite, as without a snapshot
                log.warning("could not save the search snapshot of library %s: %s", library, exc)

    def _snapshots_to_save(self) -> dict[str, tuple[dict[str, Any], bool, ExactCopy]]:
        """The complete copies of this Lite file's FLAT libraries, when this is the file's last store here (the
        snapshot is saved once Lite has let go of the folder: stores/snapshot.py)."""
        key = os.path.abspath(Path(self.uri).expanduser())
        if self._copies is None or _LITE_STORES.get(key, 0) > 1:
            return {}
        ready = {}
        for library in self._copies.libraries():
            copy = self._copies.ready(library)
            try:
                meta = self.meta(library)
                if copy is None or meta is None or meta.index != "FLAT":
                    continue
                text = self._client.has_collection(self.text_collection(library))
            except Exception as exc:  # noqa: BLE001 - no snapshot then; the close goes on
                log.warning("no search snapshot of library %s: %s", library, exc)
                continue
            ready[library] = (dataclasses.asdict(meta), bool(text), copy)
        return ready


def _meta_from(library: str, desc: dict[str, Any], collection: str = "") -> LibraryMeta:
    props = desc.get("properties") or {}
    if "searchcore.model" not in props:
        raise LibraryError("collection_foreign", collection=f"{PREFIX}{library}")
    index = json.loads(props.get("searchcore.index", '{"type": "FLAT", "params": {}}'))
    fields = {f.get("name") for f in desc.get("fields") or []}
    return LibraryMeta(library, props["searchcore.model"], int(props["searchcore.dim"]), index["type"],
                       index["params"], all(f in fields for f in ATTR_FIELDS), all(f in fields for f in VIDEO_FIELDS),
                       props.get("searchcore.model_file", ""), props.get("searchcore.digest", ""),
                       collection or PREFIX + library)


def _release_lite(path: str) -> None:
    """Milvus Lite serves a file (and holds its lock) until the process exits; stop it with its last store."""
    key = os.path.abspath(path)
    _LITE_STORES[key] = _LITE_STORES.get(key, 1) - 1
    if _LITE_STORES[key] <= 0:
        del _LITE_STORES[key]
        _LITE_COPIES.pop(key, None)
        _LITE_TEXT_COPIES.pop(key, None)
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(key)


def _is_lock_error(exc: BaseException | None) -> bool:
    while exc is not None:
        if type(exc).__name__ == "DataDirLockedError" or "holds the lock" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
