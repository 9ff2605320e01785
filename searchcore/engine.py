"""Where the real pieces are wired together: the encoder and the stores that stores/factory.open_stores builds.

Front ends (cli.py, the Gradio UI, the JSON API) hold one Engine and call its
methods; tests build one over the tiny model and real embedded stores.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from searchcore import search as search_mod
from searchcore.config import Settings, validate_library
from searchcore.errors import DatasetError, LibraryError, ModelError, QueryError, SearchcoreError
from searchcore.indexing.ingest import MASS_REMOVAL_SHARE, IngestOptions, Progress, ingest
from searchcore.indexing.maintenance import CheckReport, OcrReport, compare_stores, read_words, repair_vectors
from searchcore.indexing.originals import make_thumbnails, read_original, video_file
from searchcore.indexing.reindex import ReindexReport, ReindexStatus, reindex, run_in_background
from searchcore.indexing.report import IngestReport
from searchcore.indexing.uploads import ingest_uploads
from searchcore.models.encoder import OFFICIAL_MODELS, Encoder, load_encoder, recorded_model
from searchcore.query import Understood
from searchcore.search import SearchResult
from searchcore.sources.chinese_clip import feature_dim, find_splits, image_features_file
from searchcore.sources.datasets import file_path, folder_image_id, is_picture, open_source, printable_path
from searchcore.sources.videos import DEFAULT_INTERVAL
from searchcore.stores.factory import SnapshotFirst, Stores, open_stores
from searchcore.stores.filters import Filters
from searchcore.stores.image_db import ImageDb
from searchcore.stores.images import StoredImage
from searchcore.stores.text_index import TextIndex
from searchcore.stores.vectors import Hit, LibraryMeta, VectorStore
from searchcore.stores.videos import StoredVideo

if TYPE_CHECKING:
    from searchcore.models.ocr import OcrReader

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_FRAME_INTERVAL = 3600.0


def parse_frame_interval(value: Any) -> float:
    """Seconds between a video's sampled frames (0.1 to an hour), or a QueryError."""
    try:
        if isinstance(value, bool):
            raise ValueError
        seconds = float(value)
    except (TypeError, ValueError):
        raise QueryError("frame_interval_invalid", low=0.1, high=MAX_FRAME_INTERVAL, value=value) from None
    if not 0.1 <= seconds <= MAX_FRAME_INTERVAL:  # NaN fails this too
        raise QueryError("frame_interval_invalid", low=0.1, high=MAX_FRAME_INTERVAL, value=value)
    return seconds

@dataclass
class LibraryInfo:
    """A library's size and how it was built."""

    library: str
    count: int
    model: str | None
    dim: int | None
    vector_backend: str
    image_backend: str
    index: str | None = None
    images: int = 0
    encoder: dict[str, Any] | None = None  # how the encoder runs, when asked for
    updated: float | None = None  # when its images last changed (Unix time)
    filterable: bool | None = None  # has the folder and date fields (False: made before them; see migrate)
    videos: int = 0  # videos in a folder library
    frames: int = 0  # of `images`, the videos' sampled frames

    def to_json(self) -> dict[str, Any]:
        """The CLI's --json shape."""
        data = {"library": self.library, "count": self.count, "model": self.model, "dim": self.dim,
                "vector_backend": self.vector_backend, "image_backend": self.image_backend,
                "index": self.index, "images": self.images, "filterable": self.filterable,
                "videos": self.videos, "frames": self.frames,
                "updated": None if self.updated is None else
                dt.datetime.fromtimestamp(self.updated).astimezone().isoformat(timespec="seconds")}
        if self.encoder is not None:
            data["encoder"] = self.encoder
        return data


@dataclass
class SplitIngest:
    """One split of a dataset ingest: whether its vectors came from its feature file, and the report."""

    split: str | None  # None: the folder held no split and was ingested as a folder of images
    features: bool
    report: IngestReport


class Engine:
    """Encoder, vector store and image store, built once and shared by every request."""

    def __init__(self, settings: Settings, stores: Stores | None = None, *, encoder: Encoder | None = None,
                 preload_encoder: bool = False, exact_copy: bool = True, one_question: bool = False) -> None:
        """stores: the stores to hold (None: open_stores builds the settings' own, with exact_copy and
        one_question). preload_encoder: load the encoder in a background thread while the stores open (a fresh
        process's first query waits for whichever takes longer, not for both). exact_copy=False: no in-process
        copy of Lite libraries, for a process that asks one question (loading the copy would only compete with
        it). one_question: that process's question about the settings' library is answered from the library's
        search snapshot when it is current, without starting Milvus Lite (stores/snapshot.py)."""
        self.settings = settings
        self._encoder = encoder
        self._encoder_lock = threading.Lock()
        self._encoders: dict[str, Encoder] = {}  # model name -> its encoder, shared by the libraries built with it
        self._models_lock = threading.RLock()
        self._named: dict[str, Encoder] = {}  # the models reindexes were asked for, by the name or path given
        self._reindexes: dict[str, ReindexStatus] = {}  # library -> its reindex under way, or its last one
        if preload_encoder and encoder is None:
            threading.Thread(target=self._preload, name="load-encoder", daemon=True).start()
        if stores is None:
            stores = open_stores(settings, exact_copy=exact_copy, one_question=one_question)
        self.vectors: VectorStore = stores.vectors
        self.images: ImageDb = stores.images
        self.texts: TextIndex | None = stores.texts
        self._ocr: OcrReader | None = None

    @property
    def stores(self) -> Stores:
        """The stores this engine holds, for the functions that take them (find_duplicates, evaluate)."""
        return Stores(self.vectors, self.images, self.texts)

    @property
    def encoder(self) -> Encoder:
        """The encoder, loaded on first use (info and drop never need it)."""
        with self._encoder_lock:
            if self._encoder is None:
                self._encoder = load_encoder(self.settings)
            return self._encoder

    def encoder_for(self, library: str | None = None) -> Encoder:
        """The encoder of a library's own model (the configured one for a library not built yet), loaded on first
        need and shared by every library built with that model; a LibraryError naming the model and `reindex`
        when it cannot be loaded."""
        name = self._library(library)
        meta = self.vectors.meta(name)
        return self.encoder if meta is None else self.model_encoder(meta)

    def model_encoder(self, meta: LibraryMeta) -> Encoder:
        """The encoder of the model a library records (see encoder_for)."""
        found = self._encoders.get(meta.model)
        if found is not None:
            return found
        if self._is_configured(meta):
            encoder = self.encoder
            if encoder.name == meta.model and encoder.dim == meta.dim:
                self._encoders[meta.model] = encoder
                return encoder
        with self._models_lock:
            found = self._encoders.get(meta.model)
            if found is not None:
                return found
            settings = recorded_model(self.settings, meta.model, meta.model_file)
            if settings is None:
                raise LibraryError("library_model_unavailable", library=meta.library, model=meta.model, dim=meta.dim,
                                   reason=ModelError("model_weights_not_here" if meta.model in OFFICIAL_MODELS else
                                                     "model_weights_unrecorded"))
            try:
                encoder = load_encoder(settings)
            except SearchcoreError as exc:
                raise LibraryError("library_model_unavailable", library=meta.library, model=meta.model, dim=meta.dim,
                                   reason=str(exc)) from exc
            if encoder.name != meta.model or encoder.dim != meta.dim:
                raise LibraryError("library_model_unavailable", library=meta.library, model=meta.model, dim=meta.dim,
                                   reason=ModelError("model_file_other_weights", file=meta.model_file,
                                                     encoder=encoder.name))
            self._encoders[meta.model] = encoder
            return encoder

    def encoder_of(self, model: str) -> Encoder:
        """The encoder of a model given by name or checkpoint path (the configured one's other settings), loaded
        once and shared."""
        if model == self.settings.model:
            return self.encoder
        with self._models_lock:
            if model not in self._named:
                encoder = load_encoder(self.settings.replace(model=model))
                self._named[model] = self._encoders.setdefault(encoder.name, encoder)
            return self._named[model]

    def reindex(self, model: str, library: str | None = None, *, progress: Progress | None = None,
                status: ReindexStatus | None = None) -> ReindexReport:
        """Encode every picture of a library again with another model into a new collection beside the old, which
        keeps answering searches meanwhile, then switch the library to it in one step (indexing/reindex.py). Run
        again after an interruption, it finishes the work without starting over."""
        name = self._library(library)
        meta = self.vectors.meta(name)
        if meta is None:
            raise LibraryError("library_missing", library=name)
        encoder = self.encoder_of(model)
        if status is not None:
            status.old_model = meta.model
            status.model = encoder.name

        def advance(done: int, total: int | None) -> None:
            if status is not None:
                status.advance(done, total)
            if progress is not None:
                progress(done, total)

        def state(now: str) -> None:
            if status is not None:
                status.state = now

        store = self.vectors.lite() if isinstance(self.vectors, SnapshotFirst) else self.vectors
        return reindex(self.images, store, name, encoder, batch_size=self.settings.batch_size,  # type: ignore[arg-type]
                       workers=self.settings.workers, progress=advance, on_state=state)

    def start_reindex(self, model: str, library: str | None = None, *,
                      progress: Progress | None = None) -> ReindexStatus:
        """Start a reindex (see reindex) on a thread of its own; its status shows how far it is. QueryError
        reindex_running while one of the library runs."""
        name = self._library(library)
        if self.vectors.meta(name) is None:
            raise LibraryError("library_missing", library=name)
        with self._models_lock:
            running = self._reindexes.get(name)
            if running is not None and running.state not in ("done", "failed"):
                raise QueryError("reindex_running", library=name, model=running.model, line=running.line())
            encoder = self.encoder_of(model)  # a model that cannot be loaded is refused now, not on the thread
            status = ReindexStatus(name, encoder.name)
            self._reindexes[name] = status
        run_in_background(status, lambda s: self.reindex(model, name, status=s, progress=progress))
        return status

    def reindex_status(self, library: str | None = None) -> ReindexStatus | None:
        """The library's reindex under way, or the last one this engine ran; None when there was none."""
        return self._reindexes.get(self._library(library))

    def _is_configured(self, meta: LibraryMeta) -> bool:
        """Whether a library's model is (or, for an older library that recorded no file, may be) the configured one."""
        if self._encoder is not None:
            return self._encoder.name == meta.model
        if meta.model in OFFICIAL_MODELS or self.settings.model in OFFICIAL_MODELS:
            return meta.model == self.settings.model
        if not meta.model_file:
            return True  # only loading it tells
        return Path(self.settings.model).expanduser().resolve() == Path(meta.model_file)

    def _preload(self) -> None:
        try:
            self.encoder  # noqa: B018 - loads it
        except Exception:  # noqa: BLE001 - the first real use loads it again and raises to the caller
            log.debug("background encoder load failed", exc_info=True)

    def _library(self, library: str | None) -> str:
        return validate_library(library or self.settings.library)

    def ingest(self, path: str | Path, *, split: str | None = None, features: str | Path | None = None,
               library: str | None = None, progress: Progress | None = None, sync: bool = False,
               ocr: bool = False, remember: bool = True, allow_mass_removal: bool = False,
               removal_share: float = MASS_REMOVAL_SHARE, frame_interval: Any = DEFAULT_INTERVAL) -> IngestReport:
        """Ingest a dataset split, feature file or image folder into a library. A folder is re-scanned
        incrementally (unchanged files are not read); sync also removes the images of files that are gone;
        ocr reads the words in each new picture for keyword search. remember=False ingests a folder without
        recording its files (a temporary folder of uploads, which no re-scan will ever see again). A sync that
        would remove all of a folder's files or more than removal_share of them raises MassRemovalError, unless
        allow_mass_removal. A folder's videos are sampled every frame_interval seconds."""
        name = self._library(library)
        interval = parse_frame_interval(frame_interval)
        source = open_source(path, split, features, known=lambda root: self.images.files(name, root),
                             workers=self.settings.workers or os.cpu_count() or 1)
        if not remember:
            source.scan = None
        if sync and source.scan is None:
            raise QueryError("sync_needs_folder")
        reader = self.ocr_reader() if ocr else None
        options = IngestOptions(batch_size=self.settings.batch_size, workers=self.settings.workers, progress=progress,
                                sync=sync, texts=self._texts(), ocr=reader, allow_mass_removal=allow_mass_removal,
                                removal_share=removal_share, frame_interval=interval)
        return ingest(source, self.encoder_for(name), self.vectors, self.images, name, options)

    def ingest_uploads(self, uploads: Sequence[str | Path], library: str | None = None, *,
                       progress: Progress | None = None, ocr: bool = False) -> IngestReport:
        """Ingest uploaded image files (within the upload limits of indexing/uploads.py) into a library."""
        return ingest_uploads(uploads, lambda folder: self.ingest(folder, library=library, progress=progress,
                                                                  ocr=ocr, remember=False))

    def ingest_dataset(self, path: str | Path, *, library: str | None = None,
                       progress: Progress | None = None) -> list[SplitIngest]:
        """Ingest every split of a Chinese-CLIP dataset folder, each from its {split}_imgs.img_feat.jsonl when
        it has one (no encoding), else by encoding its images; a folder with no split as a folder of images.
        Every feature file's dimension is checked against the model before anything is written."""
        root = Path(path).expanduser()
        splits = find_splits(root)
        encoder = self.encoder_for(library)
        if not splits:
            return [SplitIngest(None, False, self.ingest(root, library=library, progress=progress))]
        features = {s: image_features_file(root, s) for s in splits if image_features_file(root, s).is_file()}
        for feature_file in features.values():
            dim = feature_dim(feature_file)
            if dim is not None and dim != encoder.dim:
                raise DatasetError("feature_dim_mismatch", path=feature_file, dim=dim, model=encoder.name,
                                   model_dim=encoder.dim)
        return [SplitIngest(s, s in features, self.ingest(root, split=s, features=features.get(s), library=library,
                                                            progress=progress)) for s in splits]

    def add_image(self, data: bytes, name: str, library: str | None = None) -> int:
        """Store one uploaded image (name gives its file type) in a library and return its id."""
        suffix = Path(name).suffix.lower()
        with tempfile.TemporaryDirectory(prefix="searchcore-upload-") as tmp:
            (Path(tmp) / f"upload{suffix if is_picture(suffix) else '.jpg'}").write_bytes(data)
            report = self.ingest(tmp, library=library, remember=False)
        if report.bad:
            raise QueryError("upload_not_image" if name else "unnamed_upload_not_image", name=name,
                             reason=report.bad[0].reason)
        return folder_image_id(data)

    def _texts(self) -> TextIndex | None:
        """The keyword index, where this Milvus has full-text search."""
        return self.texts if self.texts is not None and self.texts.unsupported() is None else None

    def ocr_reader(self) -> OcrReader:
        """The OCR reader, loaded on first use (one inference thread: the encoder keeps the other cores)."""
        from searchcore.models.ocr import load_ocr

        with self._encoder_lock:
            if self._ocr is None:
                self._ocr = load_ocr(Path(self.settings.model_dir).expanduser() / "ocr", threads=1)
            return self._ocr

    def ocr(self, library: str | None = None, *, progress: Progress | None = None) -> OcrReport:
        """Read the words in every image of a library that OCR has not read yet (nothing is encoded again)."""
        name = self._library(library)
        if self.vectors.meta(name) is None:
            raise LibraryError("library_missing", library=name)
        return read_words(self.images, name, self.ocr_reader(), self._texts(), self.encoder_for(name).resolution,
                          progress=progress)

    def search_text(self, text: Any, top_k: Any = 10, library: str | None = None, *, offset: Any = None,
                    filters: Filters | None = None, mode: str | None = None, min_similarity: Any = None,
                    exclude: Any = None, literal: Any = False, cutoff: Any = None, sort: Any = None,
                    collapse: Any = False, today: dt.date | None = None) -> list[SearchResult]:
        """Top-k images for a Chinese (or any) description (ids, scores and captions; no image bytes); offset
        skips the first results (paging), filters keep a folder and a date range; mode is semantic, keyword
        or hybrid (None: hybrid when the library has text, else semantic); min_similarity drops images less
        similar; exclude drops images whose words hold an excluded word and pushes down those that look like it;
        quoted words must appear and time words become dates unless literal; cutoff "auto" keeps the relevant
        hits; sort is relevance, newest or oldest; collapse folds near-identical pictures (search.search_text)."""
        name = self._library(library)
        return self._following_switch(name, lambda: search_mod.search_text(
            text, top_k, encoder=lambda: self.encoder_for(name), vectors=self.vectors, images=self.images,
            library=name, offset=offset, filters=filters, mode=mode, texts=self.texts, min_similarity=min_similarity,
            exclude=exclude, literal=literal, cutoff=cutoff, sort=sort, collapse=collapse, today=today))

    def understand(self, text: Any, library: str | None = None, *, literal: Any = False, exclude: Any = None,
                   today: dt.date | None = None) -> Understood:
        """How search_text reads a query on a library (time words only where its pictures have dates)."""
        return search_mod.read_query(text, images=self.images, library=self._library(library), literal=literal,
                                     exclude=exclude, today=today)

    def _following_switch(self, library: str, search: Callable[[], T]) -> T:
        """A search, asked once more when the library switched to another model while it ran (a reindex ending:
        the query was encoded for the old collection, which is gone)."""
        before = self.vectors.meta(library)
        try:
            return search()
        except SearchcoreError as failed:
            try:
                after = self.vectors.meta(library)
            except SearchcoreError:
                raise failed from None  # the store is down: the search's own error says so, not the check's
            if before is None or after is None or (before.model, before.collection) == (after.model, after.collection):
                raise
            return search()

    def rank_texts(self, queries: Sequence[str], top_k: Any = 10, library: str | None = None, *,
                   mode: str | None = None) -> list[list[Hit]]:
        """The top-k ranking (image ids and scores) of each of many text queries, in batches, as search_text ranks
        them (no threshold, exclusion, filter or page): for measuring thousands of queries."""
        name = self._library(library)
        return search_mod.rank_texts(queries, top_k, mode, encoder=lambda: self.encoder_for(name),
                                     vectors=self.vectors, images=self.images, library=name, texts=self.texts)

    def search_image(self, data: bytes, top_k: Any = 10, library: str | None = None, *, offset: Any = None,
                     filters: Filters | None = None) -> list[SearchResult]:
        """Top-k images that look like the given image (no image bytes)."""
        name = self._library(library)
        return self._following_switch(name, lambda: search_mod.search_image(
            data, top_k, encoder=lambda: self.encoder_for(name), vectors=self.vectors, images=self.images,
            library=name, offset=offset, filters=filters))

    def search_similar(self, image_id: Any, top_k: Any = 10, library: str | None = None, *, offset: Any = None,
                       filters: Filters | None = None) -> list[SearchResult]:
        """Top-k images like one already in the library (no image bytes)."""
        return search_mod.search_similar(image_id, top_k, vectors=self.vectors, images=self.images,
                                         library=self._library(library), offset=offset, filters=filters)

    def example_queries(self, library: str | None = None, n: int = 6) -> list[str]:
        """Queries to offer as examples: the library's most frequent short captions or OCR lines, else a few
        that suit photos."""
        return search_mod.example_queries(self.images, self._library(library), n)

    def migrate(self, library: str | None = None) -> bool:
        """Give a library made before folder and date filters their fields, keeping every vector (nothing is
        encoded again); False when it has them already. A crash part-way is finished by running it again."""
        name = self._library(library)
        staging = Path(self.settings.model_dir).expanduser() / "migrations" / f"{name}.npz"
        meta = self.vectors.meta(name)
        if meta is None and not staging.exists():
            raise LibraryError("library_missing", library=name)
        if meta is not None and meta.filterable and meta.videos and not staging.exists():
            return False

        def attrs(ids: list[int]) -> dict[int, tuple[str, int]]:
            return {i: (m.path, m.taken) for i, m in self.images.get_meta_many(name, ids).items()}

        def frames(ids: list[int]) -> dict[int, tuple[int, float]]:
            return {i: (m.video_id, m.time_s) for i, m in self.images.get_meta_many(name, ids).items()}

        self.vectors.rebuild(name, attrs, staging, frames)
        return True

    def migrate_originals(self, library: str | None = None) -> int:
        """Drop the originals a library made before thumbnails stored for its folder pictures, keeping thumbnails
        instead, then give the space back (VACUUM, OPTIMIZE TABLE); how many were replaced. A crash part-way is
        finished by running it again."""
        name = self._library(library)
        replaced = make_thumbnails(self.images, name)
        self.images.compact()
        return replaced

    def original(self, image_id: Any, library: str | None = None) -> StoredImage:
        """One image by id with its original bytes: as stored, or a folder picture's from its file, checked to be
        the picture indexed (OriginalUnavailableError when it is gone or changed)."""
        name = self._library(library)
        return read_original(self.images, name, self.get_image(image_id, name))

    def video(self, video_id: Any, library: str | None = None) -> StoredVideo:
        """One video of a library by id (QueryError video_not_in_library when it has none such)."""
        name, ident, found = self._by_id(self.images.get_videos, video_id, library)
        if found is None:
            raise QueryError("video_not_in_library", video_id=ident, library=name)
        return found

    def video_file(self, video_id: Any, library: str | None = None) -> Path:
        """The file of a video, to serve as it is: a recorded file of it whose size and mtime are still those
        ingested (VideoUnavailableError: missing when no file of it is there, changed when they differ)."""
        name = self._library(library)
        video = self.video(video_id, name)
        return video_file(self.images, name, video)

    def relocate(self, new_root: str | Path, library: str | None = None, old_root: str | None = None) -> int:
        """Record that a library's folder now lives elsewhere (another disk, another mount point); the number of
        files moved. Nothing is read or encoded: an ingest of the new folder then finds them unchanged."""
        name = self._library(library)
        roots = self.images.roots(name)
        if old_root is None:
            if len(roots) != 1:
                raise QueryError("relocate_which_folder", library=name, count=len(roots),
                                 folders=", ".join(sorted(roots)) or "none")
            old = next(iter(roots))
        else:
            old = printable_path(str(Path(old_root).expanduser().resolve()))
            if old not in roots:
                raise QueryError("relocate_not_a_root", library=name, old=old, folders=", ".join(sorted(roots)))
        target = Path(new_root).expanduser().resolve()
        if not target.is_dir():
            raise DatasetError("path_missing", path=target)
        recorded = self.images.files(name, old)
        if not any((target / file_path(path)).is_file() for path in list(recorded)[:200]):
            raise DatasetError("relocate_wrong_folder", old=old, path=target)
        return self.images.move_root(name, old, printable_path(str(target)))

    def get_image(self, image_id: Any, library: str | None = None) -> StoredImage:
        """One stored image by id, with its bytes (a folder picture's thumbnail)."""
        name, ident, found = self._by_id(self.images.get_many, image_id, library)
        if found is None:
            raise QueryError("image_not_in_library", image_id=ident, library=name)
        return found

    def _by_id(self, get: Callable[[str, Sequence[int]], Mapping[int, T]], ident: Any,
               library: str | None) -> tuple[str, int, T | None]:
        """The library's name, the id as parsed, and what get finds under it (None when nothing)."""
        name = self._library(library)
        parsed = search_mod.parse_query_id(ident)
        return name, parsed, get(name, [parsed]).get(parsed)

    def info(self, library: str | None = None, *, runtime: bool = False) -> LibraryInfo:
        """Counts, model, dimension and backends of one library; with runtime, how the encoder runs."""
        name = self._library(library)
        meta = self.vectors.meta(name)
        info = LibraryInfo(name, self.vectors.count(name) if meta else 0, meta.model if meta else None,
                           meta.dim if meta else None, self.vectors.backend, self.images.backend,
                           meta.index if meta else None, self.images.count(name), updated=self.images.updated(name),
                           filterable=meta.filterable if meta else None)
        info.videos, info.frames = self.images.video_counts(name)
        if runtime:
            try:
                info.encoder = self.encoder_for(name).runtime()
            except SearchcoreError as exc:  # the library's counts are still worth showing
                info.encoder = {"error": str(exc)}
        return info

    def libraries(self) -> list[LibraryInfo]:
        """Every library, with its info."""
        return [self.info(meta.library) for meta in self.vectors.libraries()]

    def drop(self, library: str | None = None) -> None:
        """Delete a library from both stores (vectors first, so no search finds a missing image)."""
        name = self._library(library)
        if self.vectors.meta(name) is None and self.images.count(name) == 0:
            raise LibraryError("library_missing", library=name)
        self.vectors.drop(name)
        if self._texts() is not None:
            self.texts.drop(name)  # type: ignore[union-attr]
        self.images.drop(name)

    def check(self, library: str | None = None, *, repair: bool = False) -> CheckReport:
        """Compare the ids of both stores, and the exact copy with Milvus (a stale copy is reloaded at once);
        with repair, re-encode missing vectors and drop orphans. Folder pictures whose file is gone or changed
        are reported too; repair re-reads the changed ones (gone ones are removed only by an ingest with sync)."""
        name = self._library(library)
        if self.vectors.meta(name) is None:
            raise LibraryError("library_missing", library=name)
        report = compare_stores(self.images, self.vectors, name, self.texts)
        if repair and not report.consistent:
            repair_vectors(report, self.images, self.vectors, self.encoder_for(name),
                           batch_size=self.settings.batch_size, workers=self.settings.workers)
            for root in report.changed_roots:
                self.ingest(file_path(root), library=name)  # a re-scan reads exactly the changed files
        return report

    def get_images(self, ids: list[int], library: str | None = None) -> dict[int, StoredImage]:
        """Stored images (bytes included) by id; ids not stored are left out."""
        return self.images.get_many(self._library(library), ids)

    @property
    def max_image_bytes(self) -> int:
        """The largest image the image store accepts."""
        return self.images.max_blob_bytes

    def health(self) -> list[str]:
        """Problems found by asking each store a cheap question ([] when both answer)."""
        problems = []
        for what, probe in (("vector store", self.vectors.libraries), ("image store", self.images.libraries)):
            try:
                probe()
            except Exception as exc:  # noqa: BLE001 - any failure of a probe means "not healthy", whatever its type
                problems.append(f"{what}: {exc}")
        return problems

    def close(self) -> None:
        """Release both stores."""
        self.stores.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def build_engine(settings: Settings, *, preload_encoder: bool = False, exact_copy: bool = True,
                 one_question: bool = False) -> Engine:
    """The real engine the settings describe."""
    return Engine(settings, preload_encoder=preload_encoder, exact_copy=exact_copy, one_question=one_question)
