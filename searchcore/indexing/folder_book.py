"""A folder ingest's bookkeeping: the files it recorded, moves and copies, and (with sync) what is gone.

The planner hands it each file whose image the library holds already (unchanged, moved or a copy); the writer
records each file once its image is in both stores; `finish` records the copies and, with sync, removes what
no remaining file holds, vectors first, so that a crash at any point leaves what a re-run completes.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from searchcore.errors import MassRemovalError, RecordError
from searchcore.records import BadRecord, FileState, FolderScan, Record
from searchcore.stores.image_db import ImageDb
from searchcore.stores.text_index import TextIndex
from searchcore.stores.vectors import VectorStore
from searchcore.stores.videos import StoredVideo

if TYPE_CHECKING:
    from searchcore.indexing.report import IngestReport


class FolderBook:
    """A folder ingest's bookkeeping: the files it recorded, moves, and (with sync) what is gone."""

    def __init__(self, scan: FolderScan, vectors: VectorStore, images: ImageDb, library: str,
                 report: IngestReport, texts: TextIndex | None = None) -> None:
        self.scan, self.vectors, self.images, self.library, self.report = scan, vectors, images, library, report
        self.texts = texts
        report.unchanged = scan.unchanged
        self.copies: list[Record] = []  # files whose content another file of this run holds
        self.gone_ids: dict[int, list[str]] = {}
        for path, image_id in scan.gone.items():
            self.gone_ids.setdefault(image_id, []).append(path)

    def stored(self, records: list[Record]) -> None:
        """Record files whose image is now in both stores (written last: a crash before leaves them unrecorded,
        and the re-run reads them again)."""
        files = {r.stat.path: FileState(r.stat.size, r.stat.mtime_ns, r.image_id) for r in records
                 if r.stat is not None and r.image_id is not None}
        self.images.put_files(self.library, self.scan.root, files)

    def present(self, record: Record) -> None:
        """A file whose image the library already holds: unchanged content, a move, or a copy."""
        assert record.stat is not None and record.image_id is not None
        path, image_id = record.stat.path, record.image_id
        if self.scan.changed.get(path) == image_id:
            self.report.unchanged += 1  # touched, same content
        elif self.gone_ids.get(image_id):
            old = self.gone_ids[image_id].pop()
            self._move(image_id, path)
            self.images.put_files(self.library, self.scan.root, {path: FileState(record.stat.size,
                                                                                 record.stat.mtime_ns, image_id)})
            self.images.delete_files(self.library, self.scan.root, [old])
            del self.scan.gone[old]
            self.report.moved += 1
            return
        else:
            self.report.present += 1
        self.stored([record])

    def _move(self, image_id: int, path: str) -> None:
        """Point the image (a video: each of its frames) at its new path in both stores, keeping its vector
        (nothing is encoded)."""
        video = self.images.get_videos(self.library, [image_id]).get(image_id)
        if video is not None:
            self._move_video(video, path)
            return
        self.images.set_paths(self.library, {image_id: path})
        vector = self.vectors.vectors(self.library, [image_id]).get(image_id)
        if vector is not None:
            taken = self.vectors.attrs(self.library, [image_id]).get(image_id, ("", 0))[1]
            self.vectors.upsert(self.library, [image_id], vector[None, :], [(path, taken)])
            text = self.texts.texts(self.library, [image_id]).get(image_id) if self.texts is not None else None
            if text:  # its words move with it, so a folder filter on a keyword search finds it there too
                self.texts.upsert(self.library, [image_id], [text], [(path, taken)])  # type: ignore[union-attr]

    def _move_video(self, video: StoredVideo, path: str) -> None:
        frames = self.images.video_frames(self.library, [video.video_id]).get(video.video_id, [])
        ids = [f for f, _ in frames]
        self.images.set_paths(self.library, dict.fromkeys(ids, path))
        found = self.vectors.vectors(self.library, ids)
        kept = [(f, t) for f, t in frames if f in found]
        if kept:
            self.vectors.upsert(self.library, [f for f, _ in kept], np.stack([found[f] for f, _ in kept]),
                                [(path, video.taken)] * len(kept), [(video.video_id, t) for _, t in kept])
        if self.texts is not None:
            texts = self.texts.texts(self.library, ids)
            self.texts.upsert(self.library, list(texts), list(texts.values()), [(path, video.taken)] * len(texts))
        self.images.put_videos(self.library, [dataclasses.replace(video, path=path)])

    def finish(self, sync: bool, allow_mass_removal: bool, share: float) -> None:
        """Record copies of files stored in this run; without sync, count what is gone; with it, remove the
        images no remaining file holds (MassRemovalError, and nothing removed, when that is too many)."""
        ids = [r.image_id for r in self.copies if r.image_id is not None]
        stored = self.vectors.existing(self.library, ids) | set(self.images.get_videos(self.library, ids))
        for record in self.copies:
            if record.image_id in stored:
                self.present(record)
            else:
                self.report.bad.append(BadRecord(record.line, RecordError("record_copy_not_ingested"), record.file))
        gone, replaced = self.scan.gone, set(self.scan.changed.values())
        if not sync:
            self.report.missing = len(gone)
            return
        recorded = self.scan.recorded
        if gone and not allow_mass_removal and (self.scan.found == 0 or len(gone) >= recorded
                                                or len(gone) > share * recorded):
            raise MassRemovalError(self.scan.root, len(gone), recorded, self.scan.found, share)
        candidates = set(gone.values()) | replaced
        # An image stays while any other recorded file (here or in another folder) still holds it.
        leaving = {(self.scan.root, p) for p in gone}
        owners = self.images.file_owners(self.library, sorted(candidates))
        remove = sorted(i for i in candidates if not owners.get(i, set()) - leaving)
        # Vectors first, then images, then the file records: a crash at any point leaves the gone files
        # recorded, so the next sync run removes what is left (`check` never sees a vector without an image).
        # a video goes with every one of its frames
        frames = [f for found in self.images.video_frames(self.library, remove).values() for f, _ in found]
        self.vectors.delete(self.library, [*remove, *frames])
        self.vectors.flush(self.library)
        if self.texts is not None:
            self.texts.delete(self.library, [*remove, *frames])
        self.images.delete_many(self.library, [*remove, *frames])
        self.images.delete_videos(self.library, remove)
        self.images.delete_files(self.library, self.scan.root, sorted(gone))
        self.report.removed = len(gone) + len(replaced.intersection(remove))
