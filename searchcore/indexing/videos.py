"""A folder's videos in the ingest pipeline: each video becomes a stream of sampled frames, and each frame one image
(a JPEG thumbnail in the image store, a vector with its video and time in Milvus).

A video is one unit: it is recorded (the videos table, then its file) only after its last frame is in both stores,
so a crash part-way leaves it unrecorded and the next run samples it again. A video that fails part-way (a
truncated file) is reported bad, and the frames of it already written are removed at the end of the ingest.
Frames are sampled on a thread of their own, at most FRAMES_AHEAD ahead of the pipeline (so decoding overlaps
encoding, and a video's frames are never held in memory together).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from searchcore.errors import RecordError, VideoDecodeError
from searchcore.records import Record, naive_seconds
from searchcore.sources.datasets import file_path, frame_id
from searchcore.sources.imaging import THUMBNAIL_QUALITY, THUMBNAIL_SIDE, DecodedImage
from searchcore.sources.videos import DEFAULT_INTERVAL, VideoInfo, sample_frames
from searchcore.stores.videos import StoredVideo

log = logging.getLogger(__name__)
# Frames are sampled at twice the model's usual input (sources/videos.DEFAULT_MAX_SIDE), and their stored
# thumbnail is that same picture as a JPEG: no frame is decoded or scaled twice.
FRAME_SIDE = min(THUMBNAIL_SIDE, 448)
FRAMES_AHEAD = 8  # sampled frames (each at most FRAME_SIDE square) waiting for the pipeline


@dataclass
class VideoJob:
    """One video being ingested: its file, what its container said, the frames issued, and how it ended."""

    record: Record
    sha256: str
    interval: float
    root: str
    changed: bool = False  # a known file with new content
    info: VideoInfo | None = None
    taken: int = 0
    frame_ids: list[int] = field(default_factory=list)
    error: RecordError | None = None
    written: int = 0  # frames in both stores

    @property
    def video_id(self) -> int:
        """The video's id (the digest rule of folder pictures, on the video file's sha256)."""
        assert self.record.image_id is not None
        return self.record.image_id

    def stored(self) -> StoredVideo:
        """The videos-table row for this video, once every frame is written."""
        stat, info = self.record.stat, self.info
        assert stat is not None and info is not None
        return StoredVideo(self.video_id, stat.path, stat.size, stat.mtime_ns, self.sha256, info.duration,
                           info.width, info.height, self.taken, self.interval)


@dataclass
class SampledFrame:
    """One sampled frame on its way through the pipeline; last: its video's final frame."""

    job: VideoJob
    image_id: int
    time: float
    picture: Image.Image | None  # dropped once the pipeline has it
    last: bool = False


def sample(job: VideoJob) -> Iterator[SampledFrame]:
    """The video's frames at its interval, one ahead so the last is marked; a bad video sets job.error and
    yields nothing more (the frames already yielded are the caller's to remove)."""
    path = Path(file_path(job.root)) / file_path(job.record.file)
    sampler = sample_frames(path, job.interval, FRAME_SIDE)
    held: SampledFrame | None = None
    try:
        for frame in sampler:
            if job.info is None:
                job.info = sampler.info
                job.taken = video_taken(sampler.info, job.record.stat.mtime_ns if job.record.stat else 0)
            ident = frame_id(job.sha256, frame.time)
            if held is not None:
                yield held
            job.frame_ids.append(ident)
            held = SampledFrame(job, ident, frame.time, frame.image)
    except VideoDecodeError as exc:
        job.error = exc
        return
    except Exception as exc:  # noqa: BLE001 - whatever FFmpeg or a vanished file raise, one bad video never ends an ingest
        job.error = VideoDecodeError("video_unreadable", reason=f"{type(exc).__name__}: {exc}")
        log.warning("video %s: %s", job.record.file, job.error)
        return
    if held is None:
        job.error = VideoDecodeError("video_no_frame")
        return
    held.last = True
    yield held


def sampled_ahead(job: VideoJob, ahead: int = FRAMES_AHEAD) -> Iterator[SampledFrame]:
    """sample(job) run on a thread of its own, at most `ahead` frames ahead of the caller; closing the iterator
    early stops the thread."""
    frames: queue.Queue[SampledFrame | BaseException | None] = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def put(item: SampledFrame | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                frames.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for frame in sample(job):
                if not put(frame):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            put(exc)
            return
        put(None)

    thread = threading.Thread(target=produce, name=f"sample-{job.record.line}", daemon=True)
    thread.start()
    try:
        while (item := frames.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def frame_image(frame: SampledFrame) -> DecodedImage:
    """The frame as the pipeline's decoded image: the picture for the model and its JPEG thumbnail to store
    (width and height are the video's, as displayed)."""
    picture = frame.picture
    assert picture is not None
    small = picture if max(picture.size) <= THUMBNAIL_SIDE else picture.copy()
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY)
    data = buffer.getvalue()
    info = frame.job.info
    width, height = (info.width, info.height) if info is not None else picture.size
    return DecodedImage(picture, data, "JPEG", width, height, hashlib.sha256(data).hexdigest(), frame.job.taken)


def video_taken(info: VideoInfo | None, mtime_ns: int) -> int:
    """When a video was made: its container's creation time (in local wall-clock time, as EXIF times are),
    else the file's mtime; naive seconds."""
    created = info.created if info is not None else None
    if created is not None:
        local = created.astimezone().replace(tzinfo=None) if created.tzinfo is not None else created
        return naive_seconds(local)
    return naive_seconds(dt.datetime.fromtimestamp(mtime_ns / 1e9))


def job_for(record: Record, sha256: str, root: str, interval: float = DEFAULT_INTERVAL,
            changed: bool = False) -> VideoJob:
    """A video record as a job to sample."""
    return VideoJob(record, sha256, interval, root, changed)
