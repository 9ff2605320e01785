"""A watched folder: keeps a library in step with a folder of images while the process runs.

A watchdog observer only notes that something under the folder changed; a worker thread waits until the
events stop for `debounce` seconds (or `max_delay` under a constant stream), then runs one incremental
re-scan, `Engine.ingest(folder, sync=True)`: new and changed files are encoded, deleted ones removed, and
unchanged ones cost a stat. So the watcher tracks no files of its own, and a missed event is made good by
the next re-scan.

A root that vanished or holds no pictures any more (an unmounted drive, a NAS that went away) removes
nothing: the watcher says it is waiting, looks again every `poll` seconds, and re-scans once the folder is
back. Deletions inside a folder that is there are followed as they happen, however many.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from searchcore.config import validate_library
from searchcore.engine import Engine
from searchcore.errors import DatasetError, MassRemovalError, SearchcoreError
from searchcore.indexing.report import IngestReport
from searchcore.sources.datasets import is_picture, is_video

log = logging.getLogger(__name__)

# Opened and closed-without-writing are left out: the re-scan itself reads files, and must not wake the watcher.
# A moved-in directory arrives as file events for its content; a moved-out one only as a directory deletion.
EVENTS = [FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileDeletedEvent, FileMovedEvent,
          DirDeletedEvent, DirMovedEvent]
STOP_SECONDS = 30


class _Stopped(Exception):
    """Raised from the progress callback to end a re-scan when the watcher stops."""


class _Changes(FileSystemEventHandler):
    """Passes on events that can change the library: an image file's, or a directory's deletion or move."""

    def __init__(self, notice: Callable[[], None]) -> None:
        self.notice = notice

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            if isinstance(event, (DirDeletedEvent, DirMovedEvent)):
                self.notice()
            return
        paths = [event.src_path, getattr(event, "dest_path", "")]
        if any(_is_image(p) for p in paths):
            self.notice()


def _is_image(path: str | bytes) -> bool:
    name = path.decode(errors="replace") if isinstance(path, bytes) else path
    return is_picture(name) or is_video(name)


class FolderWatcher:
    """Keeps `library` in step with an image folder: a re-scan at start, then one per settled burst of changes.

    last_report is the latest re-scan's report, last_error its error (a kind, None after a good one), last_change the
    wall-clock time of the latest change noticed. on_report is called with each re-scan's report, in the
    watcher's thread. A failing re-scan is logged as a warning and tried again at the next change.
    """

    def __init__(self, engine: Engine, folder: str | Path, library: str | None = None, *, debounce: float = 2.0,
                 max_delay: float = 30.0, on_report: Callable[[IngestReport], None] | None = None,
                 poll: float = 5.0) -> None:
        self.engine = engine
        self.folder = Path(folder).expanduser().resolve()
        self.library = validate_library(library or engine.settings.library)
        self.debounce = debounce
        self.max_delay = max(max_delay, debounce)
        self.on_report = on_report
        self.poll = poll
        self.waiting: SearchcoreError | None = None  # why re-scans wait for the folder to come back (None: it is there)
        self.last_report: IngestReport | None = None
        self.last_error: SearchcoreError | None = None
        self.last_change: float | None = None
        self._wake = threading.Condition()
        self._pending_since: float | None = None  # monotonic time of the first change not yet re-scanned
        self._latest = 0.0  # monotonic time of the latest change
        self._stopping = False
        self._observer: BaseObserver | None = None
        self._worker: threading.Thread | None = None

    def start(self) -> None:
        """Start watching; the first re-scan begins at once. DatasetError when the folder cannot be watched."""
        if not self.folder.is_dir():
            raise DatasetError("watch_not_folder", path=self.folder)
        observer = Observer()
        self._schedule(observer)
        observer.daemon = True
        try:
            observer.start()
        except OSError as exc:  # e.g. the inotify watch limit (fs.inotify.max_user_watches)
            raise DatasetError("watch_failed", path=self.folder, reason=str(exc)) from None
        self._observer = observer
        with self._wake:
            self._pending_since = self._latest = time.monotonic() - self.debounce
        self._worker = threading.Thread(target=self._run, name="watch-folder", daemon=True)
        self._worker.start()
        log.info("watching %s for library %s", self.folder, self.library)

    def _schedule(self, observer: BaseObserver) -> None:
        observer.schedule(_Changes(self._notice), str(self.folder), recursive=True, event_filter=EVENTS)

    def stop(self) -> None:
        """Stop watching; a re-scan in progress ends at its next image (what it stored stays)."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=STOP_SECONDS)
        if self._worker is not None:
            self._worker.join(timeout=STOP_SECONDS)
            if self._worker.is_alive():
                log.warning("the re-scan of %s did not stop within %ds", self.folder, STOP_SECONDS)

    def _notice(self) -> None:
        now = time.monotonic()
        self.last_change = time.time()
        with self._wake:
            self._latest = now
            if self._pending_since is None:
                self._pending_since = now
            self._wake.notify_all()

    def _settled(self) -> bool:
        """Wait until the pending changes have settled; False when stopping."""
        with self._wake:
            while not self._stopping:
                if self.waiting is not None:
                    self._wake.wait(self.poll)  # no event comes from a folder that is not there: look again
                    if not self._stopping and self._folder_back():
                        self._pending_since = None
                        return True
                    continue
                if self._pending_since is None:
                    # A root moved or unmounted sends no event for itself: its absence is seen by looking.
                    self._wake.wait(self.poll)
                    if self._pending_since is None and not self._stopping and not self.folder.is_dir():
                        self._wait_for_folder()
                    continue
                now = time.monotonic()
                due = min(self._latest + self.debounce, self._pending_since + self.max_delay)
                if now >= due:
                    self._pending_since = None  # changes from here on wait for the next re-scan
                    return True
                self._wake.wait(due - now)
            return False

    def _wait_for_folder(self) -> None:
        self.waiting = self.last_error = DatasetError("watch_folder_gone", folder=self.folder)
        log.warning("watch %s", self.waiting)

    def _folder_back(self) -> bool:
        """Whether the folder is there again; if so, watch it afresh (the old watch ended with the folder)."""
        try:
            back = self.folder.is_dir() and any(self.folder.iterdir())
        except OSError:
            return False
        if back and self._observer is not None:
            try:
                self._observer.unschedule_all()
                self._schedule(self._observer)
            except OSError as exc:
                log.warning("watch %s: cannot watch it again yet (%s)", self.folder, exc)
                return False
        return back

    def _run(self) -> None:
        while self._settled():
            self._rescan()

    def _rescan(self) -> None:
        def progress(done: int, total: int | None) -> None:
            if self._stopping:
                raise _Stopped

        try:
            # Deletions are followed whatever their number; only a vanished or empty root is refused (below).
            report = self.engine.ingest(self.folder, library=self.library, progress=progress, sync=True,
                                        removal_share=1.0)
        except _Stopped:
            return
        except (MassRemovalError, DatasetError) as exc:
            if isinstance(exc, MassRemovalError) or not self.folder.is_dir():
                self._wait_for_folder()
                return
            self.last_error = exc
            log.warning("watch %s: re-scan failed (%s); trying again at the next change", self.folder, exc)
            return
        except Exception as exc:  # noqa: BLE001 - a failing re-scan must not end the watcher
            self.last_error = exc if isinstance(exc, SearchcoreError) else SearchcoreError(
                "watch_rescan_failed", error=type(exc).__name__, reason=str(exc))
            log.warning("watch %s: re-scan failed (%s); trying again at the next change", self.folder, exc,
                        exc_info=not isinstance(exc, SearchcoreError))
            return
        if self.waiting is not None:
            log.info("watch %s: the folder is back; watching it again", self.folder)
        self.last_report, self.last_error, self.waiting = report, None, None
        log.debug("watch %s: %s", self.folder, report.summary())  # ingest logs the summary itself
        if self.on_report is not None:
            try:
                self.on_report(report)
            except Exception:  # noqa: BLE001 - the caller's callback must not end the watcher either
                log.warning("watch %s: the report callback failed", self.folder, exc_info=True)
