"""Distributed ingest on Ray Data: encoder workers on every GPU (or CPU cores) of a Ray cluster.

The driver records the library's model once, then streams a Chinese-CLIP split's tsv lines through
a Ray Dataset. Each worker holds one encoder and its own store connections and runs the same
pipeline as `searchcore ingest` (ingest.py) on its batches, so the library it builds is the one
`searchcore ingest` builds. Vectors are upserted into Milvus; with a bulk folder they are written
as NumPy files instead and Milvus imports them at the end (bulk insert).

Workers are separate processes, so the vector store must be a Milvus server (a Lite file is held
by one process). The image store may be MySQL or, on a single machine, SQLite.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import time
import uuid
import warnings
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from searchcore.config import Settings, validate_library
from searchcore.errors import BackendUnavailableError, ConfigError, DatasetError, RecordError, SearchcoreError
from searchcore.indexing.ingest import IngestOptions, Progress, ingest
from searchcore.indexing.report import IngestReport
from searchcore.models.encoder import load_encoder, load_model
from searchcore.records import BadRecord, Record, Source
from searchcore.sources.chinese_clip import count_lines, read_captions, resolve_split, tsv_file, tsv_record
from searchcore.stores.factory import BulkRows, open_stores, open_vector_store
from searchcore.stores.vectors import collection_schema

log = logging.getLogger(__name__)

BATCH_ROWS = 256
BULK_TIMEOUT = 3600.0


def ingest_ray(settings: Settings, path: str | Path, *, split: str | None = None, library: str | None = None,
               ray_address: str | None = None, num_workers: int | None = None, batch_rows: int = BATCH_ROWS,
               bulk_dir: str | Path | None = None, progress: Progress | None = None) -> IngestReport:
    """Ingest a Chinese-CLIP tsv split with encoder workers on Ray; the report sums every worker's."""
    started = time.perf_counter()
    name = validate_library(library or settings.library)
    if not settings.is_milvus_server:
        raise ConfigError("ray_needs_server")
    if batch_rows < 1:
        raise ConfigError("setting_at_least", setting="batch rows", low=1, value=batch_rows)
    ray = _import_ray()  # before any work: without Ray, say so first
    root, split = resolve_split(Path(path).expanduser(), split)
    tsv = _tsv_path(root, split)
    captions, problems = read_captions(root, split)
    collection = _open_library(settings, name)
    bulk = str(Path(bulk_dir).expanduser().resolve()) if bulk_dir is not None else None
    report = IngestReport(name, bad=list(problems))
    importer = BulkImporter(settings, collection) if bulk is not None else None
    unnumbered: list[tuple[BadRecord, str | None]] = []  # the workers' bad records, with their tsv line's digest
    try:
        with _ray_session(ray, ray_address):
            done, total = 0, count_lines(tsv)
            for row in _worker_pipeline(ray, settings, name, tsv, captions, num_workers, batch_rows,
                                        bulk).iter_rows():
                report.added += int(row["added"])
                report.present += int(row["present"])
                for entry in json.loads(row["bad"]):
                    digest = entry.pop("digest")
                    entry["reason"] = RecordError.from_json(entry["reason"])
                    unnumbered.append((BadRecord(**entry), digest))
                if importer is not None:
                    for files in json.loads(row["files"]):
                        importer.submit(files)
                done += int(row["lines"])
                if progress is not None:
                    progress(done, total)
        if importer is not None:
            importer.wait()
        else:
            _flush(settings, name)
    finally:
        if importer is not None:
            importer.close()
    report.bad += _number_lines(tsv, unnumbered)
    report.seconds = time.perf_counter() - started
    log.info("ray ingest into %s: %d added, %d present, %d bad in %.1fs", name, report.added, report.present,
             len(report.bad), report.seconds)
    return report


def _tsv_path(root: Path, split: str) -> Path:
    """The split's {split}_imgs.tsv: Ray reads tsv splits only."""
    tsv = tsv_file(root, split)
    if not tsv.is_file():
        raise DatasetError("ray_tsv_missing", path=tsv)
    return tsv


def _open_library(settings: Settings, library: str) -> str:
    """Create the collection (or refuse another model's) once, before any worker writes; the collection holding
    the library's vectors (behind its alias, once reindexed)."""
    _, spec = load_model(settings)
    stores = open_stores(settings)  # creates the table here, not in several workers at once
    try:
        return stores.vectors.open_library(library, spec.name, spec.dim, create=True, model_file=spec.source,
                                           digest=spec.digest).collection
    finally:
        stores.close()


def _import_ray() -> Any:
    """The ray module, imported only here: Ray is an optional dependency."""
    try:
        import ray
    except ImportError:
        raise ConfigError("ray_missing") from None
    return ray


@contextlib.contextmanager
def _ray_session(ray: Any, address: str | None) -> Iterator[None]:
    """Ray connected to a cluster (address) or started on this machine; shut down if started here."""
    started = not ray.is_initialized()
    if started:
        try:
            _init_ray(ray, address)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise BackendUnavailableError("ray_cluster_unreachable", address=address, reason=str(exc)) from exc
    ray.data.DataContext.get_current().enable_progress_bars = False
    if not log.isEnabledFor(logging.INFO):
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        yield
    except SearchcoreError:
        raise
    except Exception as exc:  # Ray wraps a worker's exception; show the user the one searchcore raised
        raise _searchcore_cause(exc) from exc
    finally:
        if started:
            ray.shutdown()


def _worker_pipeline(ray: Any, settings: Settings, library: str, tsv: Path, captions: dict[int, list[str]],
                     num_workers: int | None, batch_rows: int, bulk_dir: str | None) -> Any:
    """The split as a Ray Dataset of lines, mapped by a pool of encoder workers to one summary row a batch."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    if settings.device == "cuda" and not gpus:
        raise ConfigError("ray_no_gpu")
    if gpus and settings.device != "cpu":
        resources = {"num_gpus": 1, "num_cpus": 1}
        workers = num_workers or gpus
    else:
        resources = {"num_cpus": 1}
        settings = settings.replace(device="cpu")
        workers = num_workers or max(1, cpus - 1)  # leave a core for reading the file
    log.info("ray ingest: %d workers, %s each", workers, resources)
    lines = ray.data.read_text(str(tsv), drop_empty_lines=True)
    return lines.map_batches(
        IngestWorker,
        fn_constructor_kwargs={"settings": settings, "library": library, "file": tsv.name,
                               "captions": captions, "bulk_dir": bulk_dir},
        batch_size=batch_rows, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
        **resources)


class IngestWorker:
    """One Ray worker: an encoder and store connections, ingesting batches of tsv lines."""

    def __init__(self, settings: Settings, library: str, file: str, captions: dict[int, list[str]],
                 bulk_dir: str | None) -> None:
        self.library = library
        self.file = file
        self.captions = captions
        self.settings = settings
        self.encoder = load_encoder(settings)
        self.stores = open_stores(settings)
        self.rows = BulkRows(self.stores.vectors, bulk_dir, _bulk_writer) if bulk_dir is not None else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Ingest one batch of lines; one row of counts, bad records and bulk files comes back."""
        records = [_parse_line(str(line), self.file, self.captions) for line in batch["text"]]
        source = Source("tsv", Path(self.file), None, len(records), iter(records))
        options = IngestOptions(batch_size=self.settings.batch_size, workers=self.settings.workers or 2,
                                flush=False)  # the driver flushes once at the end (Milvus rate-limits flushes)
        report = ingest(source, self.encoder, self.rows or self.stores.vectors, self.stores.images, self.library,  # type: ignore[arg-type]
                        options)
        bad = [{"line": int(b.line), "reason": b.reason.to_json(), "file": b.file,
                "digest": line_digest(b.line.text) if isinstance(b.line, RayLine) else None} for b in report.bad]
        return {"lines": np.array([len(records)]), "added": np.array([report.added]),
                "present": np.array([report.present]), "bad": np.array([json.dumps(bad, ensure_ascii=False)]),
                "files": np.array([json.dumps(self.rows.take_files() if self.rows is not None else [])])}


class RayLine(int):
    """A record's line number in a Ray ingest: 0, since Ray keeps no line numbers, holding the line's text.

    ingest copies a record's line into any bad record it reports (and "file:0" into a stored image's source),
    so a worker can tell the driver which tsv line each bad record came from, and the driver finds its number.
    """

    text: str

    def __new__(cls, text: str) -> RayLine:
        line = super().__new__(cls, 0)
        line.text = text
        return line


def line_digest(text: str) -> str:
    """What identifies a tsv line, as Ray's read_text hands it over, between a worker and the driver."""
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _parse_line(line: str, file: str, captions: dict[int, list[str]]) -> Record:
    """One tsv line as Ray's read_text hands it over, as a Record whose line is a RayLine."""
    return tsv_record(RayLine(line), file, line.encode("utf-8", "replace"), captions)


def _number_lines(tsv: Path, unnumbered: list[tuple[BadRecord, str | None]]) -> list[BadRecord]:
    """The workers' bad records with their tsv line numbers, in line order, found in one pass over the file.

    Only runs when there are bad records, and stops at the last of them.
    """
    waiting: dict[str, deque[BadRecord]] = {}
    for record, digest in unnumbered:
        if digest is not None:
            waiting.setdefault(digest, deque()).append(record)
    if waiting:
        with tsv.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                for text in raw.decode("utf-8", "replace").splitlines():  # the lines Ray's read_text makes
                    digest = line_digest(text)
                    if digest in waiting:
                        waiting[digest].popleft().line = number
                        if not waiting[digest]:
                            del waiting[digest]
                if not waiting:
                    break
    return sorted((record for record, _ in unnumbered), key=lambda record: record.line)


def _bulk_writer(folder: str, dim: int) -> Any:
    try:
        from pymilvus.bulk_writer import BulkFileType, LocalBulkWriter
    except ModuleNotFoundError as exc:
        raise ConfigError("bulk_writer_missing", reason=str(exc)) from None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return LocalBulkWriter(schema=collection_schema(dim), local_path=folder, file_type=BulkFileType.NUMPY)


class BulkImporter:
    """Milvus bulk insert of NumPy file sets: submitted as workers write them, awaited at the end.

    Milvus reads the files itself: they must be on a path the server sees (its host's file system
    for a standalone server with local storage). 2.3 servers take only the gRPC Import call, which
    pymilvus exposes through its ORM `utility` module.
    """

    def __init__(self, settings: Settings, collection: str) -> None:
        from pymilvus import connections

        self.collection = collection
        self.alias = f"searchcore-bulk-{uuid.uuid4().hex[:8]}"
        self.tasks: list[tuple[int, list[str]]] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the ORM calls are deprecated in pymilvus 3, yet 2.3 servers need them
            connections.connect(alias=self.alias, uri=settings.milvus_uri, token=settings.milvus_token)

    def submit(self, files: list[str]) -> None:
        """Start one import task (the server queues them)."""
        from pymilvus import utility

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            task = self._call(lambda: utility.do_bulk_insert(self.collection, files=files, using=self.alias))
        self.tasks.append((task, files))

    def wait(self, timeout: float = BULK_TIMEOUT) -> None:
        """Wait for every task, make the imported rows searchable, then delete the files."""
        from pymilvus import Collection, utility

        deadline = time.monotonic() + timeout
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for task, files in self.tasks:
                while True:
                    state = self._call(lambda t=task: utility.get_bulk_insert_state(t, using=self.alias))  # type: ignore[misc]
                    if state.state_name == "Completed":
                        break
                    if state.state_name.startswith("Failed") or time.monotonic() > deadline:
                        raise BackendUnavailableError("bulk_insert_incomplete", files=", ".join(files),
                                                      state=state.state_name,
                                                      reason=state.infos.get("failed_reason", ""))
                    time.sleep(0.5)
            if self.tasks:  # a loaded collection serves imported segments only after a refresh
                self._call(lambda: Collection(self.collection, using=self.alias).load(_refresh=True))
        for _, files in self.tasks:
            shutil.rmtree(Path(files[0]).parent.parent, ignore_errors=True)  # {bulk_dir}/{writer uuid}/{n}/x.npy
        self.tasks = []

    def close(self) -> None:
        """Drop the connection."""
        from pymilvus import connections

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            connections.disconnect(self.alias)

    def _call(self, fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:
            raise BackendUnavailableError("bulk_insert_failed", collection=self.collection, reason=str(exc)) from exc


def _flush(settings: Settings, library: str) -> None:
    vectors = open_vector_store(settings)
    try:
        vectors.flush(library)
    finally:
        vectors.close()


def _searchcore_cause(exc: BaseException) -> SearchcoreError:
    """The SearchcoreError a worker raised, found inside Ray's wrappers, or a generic one."""
    seen: BaseException | None = exc
    while seen is not None:
        inner = getattr(seen, "cause", None)  # RayTaskError keeps the worker's own exception here
        if isinstance(inner, BaseException) and inner is not seen:
            seen = inner
        elif isinstance(seen, SearchcoreError):
            return seen
        else:
            seen = seen.__cause__
    return SearchcoreError("ray_ingest_failed", error=type(exc).__name__, reason=str(exc).splitlines()[0][:500])


LOCAL_START_TRIES = 3


def _init_ray(ray: Any, address: str | None) -> None:
    """ray.init, tried up to three times when starting a local node: on a busy 2-core machine its GCS or
    raylet can miss one of Ray's start-up deadlines ("The current node timed out during startup", "Timed out
    waiting for file .../gcs_server_port_...")."""
    import psutil  # importable wherever Ray is: `import ray` puts its own copy on sys.path

    for attempt in range(1, LOCAL_START_TRIES + 1):
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        try:
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=log.isEnabledFor(logging.INFO))
            return
        except Exception as exc:
            if address not in (None, "local") or "timed out" not in str(exc).lower():
                raise
            ray.shutdown()
            # Ray's Node raised before ray.init kept hold of it, so ray.shutdown() cannot stop the GCS, raylet
            # and the rest that it had started; left running, they would compete with the retry for the cores.
            _stop([p for p in psutil.Process().children(recursive=True) if p.pid not in before])
            if attempt == LOCAL_START_TRIES:
                raise BackendUnavailableError("ray_node_not_started", tries=attempt, reason=str(exc)) from exc
            log.warning("local Ray node did not start in time; stopped what it started, retrying")


def _stop(processes: list[Any], grace: float = 10) -> None:
    """Terminate psutil processes, and kill those still running after the grace period."""
    import psutil

    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=grace)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=grace)
