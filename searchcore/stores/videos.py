"""The videos table: a folder library's videos, as ingested (`VideoStore`); their frames are rows of the images
table (video_id, time_s)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from searchcore.ids import id_chunks
from searchcore.stores.sql import ID_BATCH, TABLE, VIDEOS, SqlTables


@dataclass(frozen=True)
class StoredVideo:
    """A video of a folder library: its file (which stays where it is), as ingested; its frames are images."""

    video_id: int
    path: str  # relative to its folder
    size: int
    mtime_ns: int
    sha256: str
    duration: float  # seconds
    width: int  # as displayed (upright)
    height: int
    taken: int  # the container's creation time, else the file's mtime (naive seconds)
    frame_interval: float  # seconds between sampled frames


class VideoStore(Protocol):
    """What ingest, search and the video routes need of a library's videos."""

    def put_videos(self, library: str, videos: Sequence[StoredVideo]) -> None: ...
    def get_videos(self, library: str, ids: Sequence[int]) -> dict[int, StoredVideo]: ...
    def video_frames(self, library: str, video_ids: Sequence[int]) -> dict[int, list[tuple[int, float]]]: ...
    def delete_videos(self, library: str, ids: Sequence[int]) -> None: ...
    def has_videos(self, library: str) -> bool: ...
    def video_counts(self, library: str) -> tuple[int, int]: ...


class SqlVideos(SqlTables):
    """`VideoStore` in SQL, over the connection it shares with the other tables' parts."""

    def put_videos(self, library: str, videos: Sequence[StoredVideo]) -> None:
        """Record ingested videos (replacing what was recorded for the same ids)."""
        if not videos:
            return
        p = self.placeholder
        sql = (f"REPLACE INTO {VIDEOS} (library, video_id, path, size, mtime_ns, sha256, duration, width, height,"
               f" taken, frame_interval) VALUES ({', '.join([p] * 11)})")
        with self._cursor() as cur:
            cur.executemany(sql, [(library, int(v.video_id), v.path, v.size, v.mtime_ns, v.sha256, v.duration,
                                   v.width, v.height, int(v.taken), v.frame_interval) for v in videos])
            self._touch(cur, library)

    def get_videos(self, library: str, ids: Sequence[int]) -> dict[int, StoredVideo]:
        """Recorded videos by id; ids not recorded are absent."""
        found: dict[int, StoredVideo] = {}
        for chunk in id_chunks(ids, ID_BATCH):
            with self._cursor() as cur:
                cur.execute(f"SELECT video_id, path, size, mtime_ns, sha256, duration, width, height, taken,"
                            f" frame_interval FROM {VIDEOS} WHERE library = {self.placeholder}"
                            f" AND video_id IN ({self._marks(chunk)})", (library, *chunk))
                for r in cur.fetchall():
                    found[int(r[0])] = StoredVideo(int(r[0]), r[1], int(r[2]), int(r[3]), r[4], float(r[5]),
                                                   int(r[6]), int(r[7]), int(r[8]), float(r[9]))
        return found

    def video_frames(self, library: str, video_ids: Sequence[int]) -> dict[int, list[tuple[int, float]]]:
        """Each video's stored frames as (frame id, time in seconds), by time."""
        found: dict[int, list[tuple[int, float]]] = {}
        for chunk in id_chunks(video_ids, ID_BATCH):
            with self._cursor() as cur:
                cur.execute(f"SELECT video_id, image_id, time_s FROM {TABLE} WHERE library = {self.placeholder}"
                            f" AND video_id IN ({self._marks(chunk)})", (library, *chunk))
                for r in cur.fetchall():
                    found.setdefault(int(r[0]), []).append((int(r[1]), float(r[2] or 0.0)))
        return {v: sorted(frames, key=lambda f: f[1]) for v, frames in found.items()}

    def delete_videos(self, library: str, ids: Sequence[int]) -> None:
        """Forget videos by id (their frames are images: delete_many removes those)."""
        for chunk in id_chunks(ids, ID_BATCH):
            with self._cursor() as cur:
                cur.execute(f"DELETE FROM {VIDEOS} WHERE library = {self.placeholder}"
                            f" AND video_id IN ({self._marks(chunk)})", (library, *chunk))
                self._touch(cur, library)

    def has_videos(self, library: str) -> bool:
        """Whether a library holds any video."""
        with self._cursor() as cur:
            cur.execute(f"SELECT 1 FROM {VIDEOS} WHERE library = {self.placeholder} LIMIT 1", (library,))
            return cur.fetchone() is not None

    def video_counts(self, library: str) -> tuple[int, int]:
        """How many videos a library holds, and how many of its images are their sampled frames."""
        p = self.placeholder
        with self._cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {VIDEOS} WHERE library = {p}", (library,))
            videos = int(cur.fetchone()[0])
            if not videos:
                return 0, 0
            cur.execute(f"SELECT COUNT(*) FROM {TABLE} WHERE library = {p} AND video_id <> 0", (library,))
            return videos, int(cur.fetchone()[0])
