"""The vector store: one Milvus collection per library, Milvus Lite file or server URI."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from .config import is_server_uri, validate_library
from .errors import BackendUnavailableError, LibraryError, LibraryLockedError, SearchcoreError

log = logging.getLogger(__name__)
R = TypeVar("R")
# pymilvus logs every failed RPC with a traceback; the engine reports failures itself.
logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
logging.getLogger("milvus_lite").setLevel(logging.CRITICAL)

PREFIX = "searchcore_"
HNSW_PARAMS = {"M": 16, "efConstruction": 200}
HNSW_EF = 128
IVF_NPROBE = 32  # Milvus's default of 10 gave recall@10 of 0.75 with nlist=1024
ID_BATCH = 1000
_LITE_STORES: dict[str, int] = {}  # Milvus Lite file -> stores open on it in this process


@dataclass(frozen=True)
class LibraryMeta:
    """What a collection records about its library."""

    library: str
    model: str
    dim: int
    index: str
    index_params: dict[str, Any]


@dataclass(frozen=True)
class Hit:
    """One vector search result."""

    image_id: int
    score: float


class VectorStore(Protocol):
    """What the engine needs from a vector store."""

    backend: str

    def open_library(self, library: str, model: str, dim: int, *, create: bool) -> LibraryMeta: ...
    def meta(self, library: str) -> LibraryMeta | None: ...
    def libraries(self) -> list[LibraryMeta]: ...
    def upsert(self, library: str, ids: Sequence[int], vectors: np.ndarray) -> None: ...
    def flush(self, library: str) -> None: ...
    def search(self, library: str, vectors: np.ndarray, top_k: int) -> list[list[Hit]]: ...
    def existing(self, library: str, ids: Sequence[int]) -> set[int]: ...
    def vectors(self, library: str, ids: Sequence[int]) -> dict[int, np.ndarray]: ...
    def ids(self, library: str) -> Iterator[int]: ...
    def delete(self, library: str, ids: Sequence[int]) -> None: ...
    def count(self, library: str) -> int: ...
    def drop(self, library: str) -> None: ...
    def close(self) -> None: ...


class MilvusVectorStore:
    """Milvus through pymilvus MilvusClient; the same code serves Lite and servers."""

    def __init__(self, uri: str, token: str = "", *, index: str = "auto", connect_timeout: float = 60) -> None:
        self.uri = uri
        self.server = is_server_uri(uri)
        self.backend = "milvus-server" if self.server else "milvus-lite"
        self.index = index
        self._metas: dict[str, LibraryMeta] = {}
        self._lock = threading.Lock()
        self._client = self._connect(token, connect_timeout)

    def _connect(self, token: str, timeout: float) -> Any:
        from pymilvus import MilvusClient

        if not self.server:
            path = Path(self.uri).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                client = MilvusClient(str(path))
                key = os.path.abspath(path)
                _LITE_STORES[key] = _LITE_STORES.get(key, 0) + 1
                return client
            except Exception as exc:
                if _is_lock_error(exc) or _lite_file_locked(path):
                    raise LibraryLockedError(
                        f"library file {path} is open in another process; stop it or use a Milvus server URI"
                    ) from exc
                raise BackendUnavailableError(f"cannot open Milvus Lite file {path}: {exc}") from exc
        deadline = time.monotonic() + timeout
        delay = 0.5
        while True:
            try:
                # never wait on one attempt past the deadline (a silent host makes each attempt block)
                attempt = max(1.0, min(10.0, deadline - time.monotonic()))
                return MilvusClient(uri=self.uri, token=token, timeout=attempt)
            except Exception as exc:
                if time.monotonic() + delay > deadline:
                    raise BackendUnavailableError(
                        f"Milvus server {self.uri} is unavailable (retried for {timeout:g}s): {exc}; "
                        "check SEARCHCORE_MILVUS_URI and that the server is running") from exc
                log.warning("Milvus server %s not ready (%s); retrying in %.1fs", self.uri, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 8)

    def _call(self, what: str, fn: Callable[[], R]) -> R:
        try:
            return fn()
        except SearchcoreError:
            raise
        except Exception as exc:
            self._metas.clear()  # a restarted server reloads collections: check (and load) them again next call
            raise BackendUnavailableError(f"vector store {self.uri} failed to {what}: {exc}") from exc

    def _index_for(self) -> tuple[str, dict[str, Any]]:
        index = self.index
        if index == "auto":
            index = "HNSW" if self.server else "FLAT"
        params = dict(HNSW_PARAMS) if index == "HNSW" else {"nlist": 1024} if index == "IVF_FLAT" else {}
        return index, params

    def open_library(self, library: str, model: str, dim: int, *, create: bool) -> LibraryMeta:
        """Open (or create) a library's collection, refusing one made with another model."""
        validate_library(library)
        meta = self.meta(library)
        if meta is None:
            if not create:
                raise LibraryError(f"library {library!r} does not exist; ingest into it first")
            return self._create(library, model, dim)
        if meta.model != model or meta.dim != dim:
            raise LibraryError(
                f"library {library!r} was built with model {meta.model} ({meta.dim}-d); "
                f"it cannot be used with {model} ({dim}-d). Use that model or another library name"
            )
        return meta

    def _create(self, library: str, model: str, dim: int) -> LibraryMeta:
        from pymilvus import DataType, MilvusClient

        index, params = self._index_for()
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index_params = self._client.prepare_index_params()
        index_params.add_index(field_name="vector", index_type=index, metric_type="IP", params=params)
        properties = {
            "searchcore.library": library,
            "searchcore.model": model,
            "searchcore.dim": str(dim),
            "searchcore.index": json.dumps({"type": index, "params": params}),
        }
        with self._lock:
            self._call("create the collection", lambda: self._client.create_collection(
                PREFIX + library, schema=schema, index_params=index_params,
                consistency_level="Strong", properties=properties))
        log.info("created library %s (%s, %d-d, %s)", library, model, dim, index)
        self._metas.pop(library, None)
        meta = self.meta(library)
        assert meta is not None
        return meta

    def meta(self, library: str) -> LibraryMeta | None:
        """The library's recorded model, dim and index, or None when it does not exist."""
        validate_library(library)
        cached = self._metas.get(library)  # one lookup: another thread may clear the cache (see _call)
        if cached is not None:
            return cached
        name = PREFIX + library
        if not self._call("list collections", lambda: self._client.has_collection(name)):
            return None
        desc = self._call("describe the collection", lambda: self._client.describe_collection(name))
        meta = _meta_from(library, desc)
        state = self._call("get the load state", lambda: self._client.get_load_state(name))
        if "Loaded" not in str(state.get("state", "")):
            self._call("load the collection", lambda: self._client.load_collection(name))
        self._metas[library] = meta
        return meta

    def libraries(self) -> list[LibraryMeta]:
        """Every library this store holds."""
        names = self._call("list collections", self._client.list_collections)
        metas = []
        for name in sorted(names):
            if name.startswith(PREFIX):
                meta = self.meta(name[len(PREFIX):])
                if meta is not None:
                    metas.append(meta)
        return metas

    def upsert(self, library: str, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Insert or replace vectors by image id."""
        rows = [{"id": int(i), "vector": v} for i, v in zip(ids, np.asarray(vectors, dtype=np.float32).tolist())]
        if rows:
            self._call("upsert vectors", lambda: self._client.upsert(PREFIX + library, rows))

    def flush(self, library: str) -> None:
        """Seal fresh vectors so searches over them are fast and durable."""
        self._call("flush", lambda: self._client.flush(PREFIX + library))

    def search(self, library: str, vectors: np.ndarray, top_k: int) -> list[list[Hit]]:
        """Inner-product top-k for each query vector, best first."""
        meta = self.meta(library)
        if meta is None:
            raise LibraryError(f"library {library!r} does not exist; ingest into it first")
        params: dict[str, Any] = {"metric_type": "IP"}
        if meta.index == "HNSW":
            params["params"] = {"ef": max(HNSW_EF, top_k)}
        elif meta.index == "IVF_FLAT":
            params["params"] = {"nprobe": IVF_NPROBE}
        data = np.asarray(vectors, dtype=np.float32).tolist()
        # Session, not the collection's Strong: a server makes a Strong read wait for the next time tick
        # (200 ms); Session still shows this client its own writes (bench/bench_query.py measures both).
        result = self._call("search", lambda: self._client.search(
            PREFIX + library, data=data, limit=top_k, search_params=params, output_fields=[],
            consistency_level="Session"))
        return [[Hit(int(h["id"]), float(h["distance"])) for h in hits] for hits in result]

    def existing(self, library: str, ids: Sequence[int]) -> set[int]:
        """The ids among these that have a vector."""
        found: set[int] = set()
        for chunk in _chunks(ids) if self.meta(library) is not None else []:
            rows = self._call("query ids", lambda c=chunk: self._client.query(  # type: ignore[misc]
                PREFIX + library, filter=f"id in {c}", output_fields=["id"]))
            found.update(int(r["id"]) for r in rows)
        return found

    def vectors(self, library: str, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """Stored vectors by id."""
        found: dict[int, np.ndarray] = {}
        for chunk in _chunks(ids) if self.meta(library) is not None else []:
            rows = self._call("fetch vectors", lambda c=chunk: self._client.get(  # type: ignore[misc]
                PREFIX + library, ids=c, output_fields=["id", "vector"]))
            for r in rows:
                found[int(r["id"])] = np.asarray(r["vector"], dtype=np.float32)
        return found

    def ids(self, library: str) -> Iterator[int]:
        """Every id with a vector, in pages."""
        if self.meta(library) is None:  # also loads a collection that a reopened store finds released
            return
        iterator = self._call("list ids", lambda: self._client.query_iterator(
            PREFIX + library, batch_size=ID_BATCH * 5, filter="id >= -9223372036854775807", output_fields=["id"]))
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
        for chunk in _chunks(ids) if self.meta(library) is not None else []:
            self._call("delete vectors", lambda c=chunk: self._client.delete(  # type: ignore[misc]
                PREFIX + library, ids=c))

    def count(self, library: str) -> int:
        """Number of vectors in a library (0 when it does not exist)."""
        if self.meta(library) is None:
            return 0
        rows = self._call("count", lambda: self._client.query(
            PREFIX + library, filter="", output_fields=["count(*)"]))
        return int(rows[0]["count(*)"])

    def drop(self, library: str) -> None:
        """Remove a library's collection."""
        validate_library(library)
        self._metas.pop(library, None)
        name = PREFIX + library
        if self._call("list collections", lambda: self._client.has_collection(name)):
            self._call("drop the collection", lambda: self._client.drop_collection(name))

    def close(self) -> None:
        """Release the client (and the Lite file lock, once the last store on the file in this process closes)."""
        if self._client is None:
            return
        self._client.close()
        self._client = None
        if not self.server:
            _release_lite(str(Path(self.uri).expanduser()))


def _meta_from(library: str, desc: dict[str, Any]) -> LibraryMeta:
    props = desc.get("properties") or {}
    if "searchcore.model" not in props:
        raise LibraryError(f"collection {PREFIX}{library} was not made by searchcore; refusing to use it")
    index = json.loads(props.get("searchcore.index", '{"type": "FLAT", "params": {}}'))
    return LibraryMeta(library, props["searchcore.model"], int(props["searchcore.dim"]), index["type"],
                       index["params"])


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    ids = [int(i) for i in ids]
    for start in range(0, len(ids), ID_BATCH):
        yield ids[start:start + ID_BATCH]


def _release_lite(path: str) -> None:
    """Milvus Lite serves a file (and holds its lock) until the process exits; stop it with its last store."""
    key = os.path.abspath(path)
    _LITE_STORES[key] = _LITE_STORES.get(key, 1) - 1
    if _LITE_STORES[key] <= 0:
        del _LITE_STORES[key]
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(key)


def _lite_file_locked(path: Path) -> bool:
    """True when another process holds Milvus Lite's lock on this data folder."""
    import fcntl

    lock = path / "LOCK"
    if not lock.is_file():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _is_lock_error(exc: BaseException | None) -> bool:
    while exc is not None:
        if type(exc).__name__ == "DataDirLockedError" or "holds the lock" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
