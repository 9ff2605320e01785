"""Moving a library to another model without an outage: every picture is encoded again into a new collection
beside the live one, which keeps answering searches with the old model, and the library switches in one step.

What is encoded comes from what the library holds: dataset and uploaded images from the image store; folder
pictures from their files when these still hold the picture indexed, else from the stored thumbnail; video
frames from their video file when it is unchanged (sampled again as ingest sampled it), else from the frames'
thumbnails. The new collection is upserted by image id, so an interrupted reindex (a SIGKILL included) resumes
where it stopped: the next run finds the collection of the same model and encodes only what it lacks. The
switch (stores/vectors.py: a Milvus alias moving) comes only once both stores hold the same ids, which is what
`searchcore check` compares; the old collection is dropped after it, and a run that finds one left over (killed
after the switch) drops it. The keyword index is kept as it is: its words do not depend on the model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from searchcore.errors import ImageDecodeError, LibraryError, RecordError, SearchcoreError
from searchcore.ids import chunks
from searchcore.indexing.ingest import Progress
from searchcore.indexing.originals import read_original, video_file
from searchcore.indexing.pipeline import prepared_batches
from searchcore.indexing.videos import FRAME_SIDE
from searchcore.models.encoder import Encoder
from searchcore.records import BadRecord
from searchcore.sources.datasets import frame_id
from searchcore.sources.videos import sample_frames
from searchcore.stores.image_db import ImageDb
from searchcore.stores.images import StoredImage
from searchcore.stores.vectors import Attrs, Frame, LibraryMeta
from searchcore.stores.videos import StoredVideo

log = logging.getLogger(__name__)
CHUNK = 64  # images read from the image store per step
CHECK_ROUNDS = 3  # times the new collection is brought up to the image store before the switch gives up


class ReindexStore(Protocol):
    """What a reindex needs of the vector store beside the library's own reads (MilvusVectorStore has it)."""

    def meta(self, library: str) -> LibraryMeta | None: ...
    def builds(self, library: str) -> dict[str, LibraryMeta]: ...
    def create_build(self, library: str, model: str, dim: int, model_file: str = "", digest: str = "") -> str: ...
    def build_upsert(self, collection: str, ids: list[int], vectors: np.ndarray,
                     attrs: list[Attrs] | None = None, frames: list[Frame] | None = None) -> None: ...
    def collection_ids(self, collection: str) -> Iterator[int]: ...
    def flush_collection(self, collection: str) -> None: ...
    def build_delete(self, collection: str, ids: list[int]) -> None: ...
    def drop_collection(self, collection: str) -> None: ...
    def switch(self, library: str, collection: str) -> None: ...


@dataclass
class ReindexReport:
    """What a reindex did: pictures encoded in this run and where each came from, those an interrupted run had
    encoded already, and whether the library switched."""

    library: str
    old_model: str
    model: str
    dim: int
    images: int = 0  # images (pictures and video frames) the library holds
    kept: int = 0  # already in the new collection from an interrupted run
    from_store: int = 0  # dataset and uploaded images, from the image store
    from_originals: int = 0  # folder pictures from their files
    from_thumbnails: int = 0  # folder pictures whose file is gone or changed, from the stored thumbnail
    from_videos: int = 0  # video frames sampled again from their video file
    from_frame_thumbnails: int = 0  # video frames whose video is gone or changed, from the stored frame
    bad: list[BadRecord] = field(default_factory=list)
    resumed: bool = False
    switched: bool = False
    already: bool = False  # the library was on this model already (a left-over collection at most was dropped)
    dropped: list[str] = field(default_factory=list)  # collections dropped (the old one, abandoned ones)
    seconds: float = 0.0

    @property
    def encoded(self) -> int:
        """Images encoded in this run."""
        return (self.from_store + self.from_originals + self.from_thumbnails + self.from_videos
                + self.from_frame_thumbnails)

    def summary(self) -> str:
        """One line for the CLI."""
        if self.already:
            return f"library {self.library} is on model {self.model} already ({self.images} images); nothing to do"
        line = (f"library {self.library}: {self.old_model} -> {self.model} ({self.dim}-d): {self.encoded} encoded "
                f"({self.from_store} from the image store, {self.from_originals} from their files, "
                f"{self.from_thumbnails} from thumbnails (file gone or changed), {self.from_videos} video frames "
                f"from their videos, {self.from_frame_thumbnails} from frame thumbnails)")
        if self.kept:
            line += f", {self.kept} encoded by the interrupted run before"
        if self.bad:
            line += f", {len(self.bad)} bad"
        return f"{line}; {'switched' if self.switched else 'not switched'} ({self.seconds:.1f}s)"

    def to_json(self) -> dict[str, Any]:
        """The CLI's --json shape."""
        data = asdict(self)
        data["bad"] = [b.to_json() for b in self.bad]
        data["encoded"] = self.encoded
        data["seconds"] = round(self.seconds, 3)
        return data


@dataclass
class ReindexStatus:
    """A reindex under way (or ended) as the app and the API show it: a progress line with an ETA."""

    library: str
    model: str
    old_model: str = ""
    done: int = 0
    total: int = 0
    state: str = "starting"  # starting, encoding, checking, switching, done, failed
    error: str | None = None
    report: ReindexReport | None = None
    started: float = field(default_factory=time.monotonic)
    _first: tuple[float, int] | None = None  # when (and at what count) the first batch was encoded

    def advance(self, done: int, total: int | None) -> None:
        """A progress callback: done of total images."""
        if self._first is None:
            self._first = (time.monotonic(), done)
        self.done, self.total = done, total or self.total

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the pace since the first batch; None before there is a pace."""
        if self._first is None or self.state != "encoding":
            return None
        since, at = self._first
        pace = (self.done - at) / max(time.monotonic() - since, 1e-9)
        return None if pace <= 0 else max(self.total - self.done, 0) / pace

    def line(self) -> str:
        """One line: what it does, how far it is, and about how long is left."""
        head = f"reindex of library {self.library} to {self.model}"
        if self.state == "failed":
            return f"{head} failed: {self.error}; the library still answers with {self.old_model}"
        if self.state == "done" and self.report is not None:
            return self.report.summary()
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        eta = self.eta_seconds
        left = f", about {_clock(eta)} left" if eta is not None else ""
        return f"{head}: {self.state}, {self.done}/{self.total} images{share}{left}; searches use {self.old_model}"

    def to_json(self) -> dict[str, Any]:
        """The API's shape."""
        eta = self.eta_seconds
        return {"library": self.library, "model": self.model, "old_model": self.old_model, "state": self.state,
                "done": self.done, "total": self.total, "eta_seconds": None if eta is None else round(eta, 1),
                "error": self.error, "line": self.line(),
                "report": self.report.to_json() if self.report is not None else None}


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def reindex(images: ImageDb, vectors: ReindexStore, library: str, encoder: Encoder, *,
            batch_size: int = 8, workers: int = 0, progress: Progress | None = None,
            on_state: Callable[[str], None] | None = None) -> ReindexReport:
    """Encode every image of a library again with encoder into a new collection, switch the library to it once
    both stores hold the same ids, and drop the old one; resumes an interrupted run of the same model."""
    started = time.perf_counter()
    meta = vectors.meta(library)
    if meta is None:
        raise LibraryError("library_missing", library=library)
    report = ReindexReport(library, meta.model, encoder.name, encoder.dim)
    state = on_state or (lambda _: None)
    builds = vectors.builds(library)
    if meta.model == encoder.name and meta.dim == encoder.dim:
        report.already, report.images = True, images.count(library)
        for name in builds:  # what a run killed after its switch left
            vectors.drop_collection(name)
            report.dropped.append(name)
        report.seconds = time.perf_counter() - started
        return report
    build = next((n for n, m in builds.items() if m.model == encoder.name and m.dim == encoder.dim), None)
    for name in [n for n in builds if n != build]:  # another model's unfinished build, or a left-over
        vectors.drop_collection(name)
        report.dropped.append(name)
    if build is None:
        build = vectors.create_build(library, encoder.name, encoder.dim, encoder.spec.source, encoder.spec.digest)
    else:
        report.resumed = True
    log.info("reindex of library %s to %s into %s%s", library, encoder.name, build,
             " (resumed)" if report.resumed else "")
    state("encoding")
    have = set(vectors.collection_ids(build))
    ids = list(images.ids(library))
    report.images = len(ids)
    report.kept = len(have.intersection(ids))
    writer = _Writer(images, vectors, library, build, encoder, report, batch_size, workers, progress,
                     done=report.kept, total=len(ids))
    writer.encode([i for i in ids if i not in have])
    vectors.flush_collection(build)
    state("checking")
    for _ in range(CHECK_ROUNDS):  # images ingested or removed meanwhile went to the live collection only
        stored, built = set(images.ids(library)), set(vectors.collection_ids(build))
        missing, orphans = sorted(stored - built), sorted(built - stored)
        if not missing and not orphans:
            break
        vectors.build_delete(build, orphans)
        writer.encode(missing)
        vectors.flush_collection(build)
    else:
        raise LibraryError("reindex_check_failed", library=library, model=encoder.name, missing=len(missing),
                           orphans=len(orphans), bad=len(report.bad))
    state("switching")
    vectors.switch(library, build)
    report.switched = True
    vectors.drop_collection(meta.collection)
    report.dropped.append(meta.collection)
    report.images = len(stored)
    report.seconds = time.perf_counter() - started
    log.info("reindex: %s", report.summary())
    return report


class _Writer:
    """Encodes images of the library with the new model and writes them to the new collection."""

    def __init__(self, images: ImageDb, vectors: ReindexStore, library: str, build: str, encoder: Encoder,
                 report: ReindexReport, batch_size: int, workers: int, progress: Progress | None, done: int,
                 total: int) -> None:
        self.images, self.vectors, self.library, self.build = images, vectors, library, build
        self.encoder, self.report, self.batch_size, self.workers = encoder, report, batch_size, workers
        self.progress, self.done, self.total = progress, done, total

    def tick(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)

    def encode(self, ids: list[int]) -> None:
        """Encode these images: pictures a chunk at a time, then each video's frames together."""
        videos: dict[int, list[int]] = {}
        for chunk in chunks(iter(ids), CHUNK):
            pictures = []
            for meta in self.images.get_meta_many(self.library, chunk).values():
                if meta.video_id:
                    videos.setdefault(meta.video_id, []).append(meta.image_id)
                else:
                    pictures.append(meta.image_id)
            self._pictures(pictures)
        for video_id, frames in videos.items():
            self._video(video_id, frames)

    def _pictures(self, ids: list[int]) -> None:
        items: list[tuple[StoredImage, str]] = []
        for stored in self.images.get_many(self.library, ids).values():
            if not stored.thumbnail:
                items.append((stored, "from_store"))
                continue
            try:
                items.append((read_original(self.images, self.library, stored), "from_originals"))
            except SearchcoreError:  # gone or changed: the thumbnail stored for it is what is left
                items.append((stored, "from_thumbnails"))
        self._write(items)

    def _video(self, video_id: int, frame_ids: list[int]) -> None:
        """A video's frames: sampled again from its file when it is unchanged, else from their thumbnails."""
        wanted = self.images.get_many(self.library, frame_ids)
        video = self.images.get_videos(self.library, [video_id]).get(video_id)
        pictures: dict[int, Any] = {}
        if video is not None:
            try:
                pictures = _sampled(video_file(self.images, self.library, video), video, set(wanted))
            except SearchcoreError:
                pictures = {}
            except Exception as exc:  # noqa: BLE001 - whatever FFmpeg raises, the thumbnails are still there
                log.warning("video %s could not be sampled again (%s); using its frames' thumbnails", video.path,
                            exc)
                pictures = {}
        sampled = [(wanted[i], pictures[i]) for i in wanted if i in pictures]
        for start in range(0, len(sampled), self.batch_size):
            batch = sampled[start:start + self.batch_size]
            vecs = self.encoder.encode_images([p for _, p in batch])
            self._upsert([s for s, _ in batch], vecs)
            self.report.from_videos += len(batch)
            self.tick(len(batch))
        self._write([(wanted[i], "from_frame_thumbnails") for i in wanted if i not in pictures])

    def _write(self, items: list[tuple[StoredImage, str]]) -> None:
        def bad(item: tuple[StoredImage, str], reason: ImageDecodeError) -> None:
            self.report.bad.append(BadRecord(0, RecordError("stored_image_bad", image_id=item[0].image_id,
                                                            reason=reason)))
            self.tick(1)

        batches = prepared_batches(items, lambda item: item[0].data, self.encoder, on_bad=bad,
                                   batch_size=self.batch_size, workers=self.workers)
        for batch, vecs in self.encoder.encode_pixel_batches(batches):
            self._upsert([p.item[0] for p in batch], vecs)
            for p in batch:
                setattr(self.report, p.item[1], getattr(self.report, p.item[1]) + 1)
            self.tick(len(batch))

    def _upsert(self, stored: list[StoredImage], vecs: np.ndarray) -> None:
        self.vectors.build_upsert(self.build, [s.image_id for s in stored], vecs, [(s.path, s.taken) for s in stored],
                                  [(s.video_id, s.time_s) for s in stored])


def _sampled(path: Path, video: StoredVideo, wanted: set[int]) -> dict[int, Any]:
    """The frames of a video sampled as ingest sampled them, by frame id (only those wanted)."""
    found = {}
    for frame in sample_frames(path, video.frame_interval, FRAME_SIDE):
        ident = frame_id(video.sha256, frame.time)
        if ident in wanted:
            found[ident] = frame.image
    return found


def run_in_background(status: ReindexStatus, work: Callable[[ReindexStatus], ReindexReport],
                      on_end: Callable[[], None] | None = None) -> threading.Thread:
    """Run a reindex on a thread of its own, its progress and outcome in status."""
    def run() -> None:
        try:
            status.report = work(status)
            status.state = "done"
        except SearchcoreError as exc:
            status.error, status.state = str(exc), "failed"
        except Exception as exc:  # noqa: BLE001 - the status says why; the library keeps its old model
            log.exception("reindex of library %s failed", status.library)
            status.error, status.state = f"unexpected {type(exc).__name__}: {exc}", "failed"
        finally:
            if on_end is not None:
                on_end()

    thread = threading.Thread(target=run, name=f"reindex-{status.library}", daemon=True)
    thread.start()
    return thread

