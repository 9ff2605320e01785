"""Video files → a few upright, model-sized frames at fixed times, without decoding every frame.

PyAV (`av` on PyPI, FFmpeg's libraries inside the wheel) rather than OpenCV, although OpenCV is already here
through the OCR wheel: PyAV gives each frame's own timestamp (so variable frame rate is handled by time, not
by counting frames), the container's index of keyframes (so a sample either seeks or decodes on, whichever
decodes less), the container's creation time and the display matrix phones write for rotation, and scales
in FFmpeg's swscale straight from YUV to the model's size; OpenCV's VideoCapture exposes frame positions that
are estimates for variable frame rate, no creation time, and converts every frame to full-size BGR first.

A sample at time t is the first frame whose timestamp is at or after t. Before each sample the sampler looks
up the keyframe at or before t in the container's index: when the decoder is already past that keyframe it
decodes on (seeking would decode the same frames again), otherwise it seeks there. So a 2 s interval costs
about one frame per sample when keyframes are 2 s apart or closer (phones write one every 1 to 2 s), and at
worst every frame when they are much further apart than the interval.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from PIL import Image

from searchcore.errors import VideoDecodeError
from searchcore.sources.imaging import MAX_PIXELS

# What a folder ingest treats as a video: the containers phones, cameras, screen recorders and downloads use.
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".3gp", ".mts", ".m2ts", ".ts",
                            ".mpg", ".mpeg", ".wmv", ".flv", ".ogv"})
DEFAULT_INTERVAL = 2.0
DEFAULT_MAX_SIDE = 448  # twice the 224 px input of the models here, so the encoder's own resize does the rest
PROBE_PACKETS = 120  # packets whose timestamps tell constant from variable frame rate
AVINDEX_KEYFRAME = 1


@dataclass(frozen=True)
class VideoInfo:
    """What a container says of its video, and of the first frame; width and height are as displayed."""

    duration: float  # seconds
    width: int
    height: int
    rotation: int  # degrees counter-clockwise that make the stored frames upright (0, 90, 180 or 270)
    fps: float | None  # the average frame rate
    variable_frame_rate: bool
    created: dt.datetime | None  # the container's creation time (aware when it gives a zone), else None
    codec: str


@dataclass(frozen=True)
class VideoFrame:
    """One sampled frame: its time from the video's start, and the picture, upright RGB, at most max_side."""

    time: float
    image: Image.Image


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Read a video's container and its first frame; raise VideoDecodeError with a reason."""
    with _open(path) as container:
        return _probe(container)


def sample_frames(path: str | os.PathLike[str], interval: float = DEFAULT_INTERVAL,
                  max_side: int = DEFAULT_MAX_SIDE, threads: int = 1) -> FrameSampler:
    """Frames at 0, interval, 2 x interval ... seconds, each upright and reduced to max_side (an iterable).

    One decoder thread by default: ingest samples several videos at once, and FFmpeg's frame threads decode
    frames past each sample that the next seek throws away (bench/bench_video.py measures both).

    Bad input raises VideoDecodeError: when the file is opened for a broken container, and at the end of the
    iteration for a video whose frames stop before its declared duration (the frames yielded before are real;
    a caller that stores a video as one unit keeps none of them).
    """
    if not interval > 0:
        raise ValueError(f"the frame interval must be a positive number of seconds, not {interval}")
    if max_side < 16:
        raise ValueError(f"max_side must be at least 16 pixels, not {max_side}")
    return FrameSampler(Path(path), float(interval), int(max_side), max(1, int(threads)))


class FrameSampler:
    """Iterates a video's sampled frames once; counts what it decoded, for tests and benchmarks."""

    def __init__(self, path: Path, interval: float, max_side: int, threads: int = 1) -> None:
        self.path, self.interval, self.max_side, self.threads = path, interval, max_side, threads
        self.info: VideoInfo | None = None
        self.decoded = 0  # frames the decoder produced, sampled or not
        self.seeks = 0

    def __iter__(self) -> Iterator[VideoFrame]:
        with _open(self.path) as container:
            stream = container.streams.video[0]
            if self.threads > 1:
                stream.thread_type, stream.thread_count = "AUTO", self.threads
            self.info = info = _probe(container)
            keyframes = _keyframe_times(stream)
            start = _stream_start(stream)
            frames: Iterator[Any] | None = None  # the decoder's output since the last seek
            last: float | None = None  # the time of the last frame decoded
            target, end = 0.0, info.duration
            index = 0
            while target < end or end == 0:
                if frames is None or last is None or _seek_first(keyframes, target, last):
                    container.seek(int((start + max(target, 0.0)) / stream.time_base), stream=stream,
                                   backward=True, any_frame=False)
                    self.seeks += 1
                    frames = self._decode(container, stream, start)
                found = None
                for time, frame in frames:
                    last = time
                    if time >= target - 1e-6:
                        found = time, frame
                        break
                if found is None:
                    break
                time, frame = found
                yield VideoFrame(round(max(time, 0.0), 6), self._picture(frame, info.rotation))
                # The next grid time after this frame: a frame spaced wider than the interval is yielded once.
                index = max(index + 1, int(time // self.interval) + 1)
                target = index * self.interval
            if end and target < end and (last is None or last < end - max(2.0, self.interval)):
                raise VideoDecodeError("video_truncated", last=last or 0, end=end)

    def _decode(self, container: Any, stream: Any, start: float) -> Iterator[tuple[float, Any]]:
        import av

        try:
            for packet in container.demux(stream):
                for frame in packet.decode():
                    self.decoded += 1
                    if frame.time is not None:
                        yield frame.time - start, frame
        except av.error.FFmpegError as exc:
            raise VideoDecodeError("video_corrupt", reason=_reason(exc)) from None

    def _picture(self, frame: Any, rotation: int) -> Image.Image:
        width, height = frame.width, frame.height
        scale = min(1.0, self.max_side / max(width, height))
        size = max(1, round(width * scale)), max(1, round(height * scale))
        image = frame.reformat(width=size[0], height=size[1], format="rgb24").to_image()
        return image.rotate(rotation, expand=True) if rotation else image


@contextlib.contextmanager
def _open(path: str | os.PathLike[str]) -> Iterator[Any]:
    """av.open, turning FFmpeg's failures and files without a video stream into VideoDecodeError."""
    import av

    try:
        size = Path(path).stat().st_size
    except OSError as exc:
        raise VideoDecodeError("video_unreadable", reason=exc.strerror or str(exc)) from None
    if size == 0:
        raise VideoDecodeError("video_file_empty")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise VideoDecodeError("video_unknown_format", reason=_reason(exc)) from None
    try:
        if not container.streams.video:
            kinds = sorted({stream.type for stream in container.streams})
            if not kinds:
                raise VideoDecodeError("video_no_streams")
            raise VideoDecodeError("video_no_video_stream", kinds=", ".join(kinds))
        yield container
    finally:
        container.close()


def _probe(container: Any) -> VideoInfo:
    import av

    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > MAX_PIXELS:
        raise VideoDecodeError("video_too_many_pixels", width=width, height=height, limit=MAX_PIXELS)
    stamps: list[int] = []
    first = None
    try:
        for packet in container.demux(stream):
            if packet.pts is not None and len(stamps) < PROBE_PACKETS:
                stamps.append(packet.pts)
            if first is None:
                first = next(iter(packet.decode()), None)
            if first is not None and len(stamps) >= PROBE_PACKETS:
                break
        if first is None:  # frames the decoder held back (B-frames, threads)
            first = next(iter(stream.decode(None)), None)
    except av.error.FFmpegError as exc:
        raise VideoDecodeError("video_corrupt", reason=_reason(exc)) from None
    if first is None:
        raise VideoDecodeError("video_no_frame")
    stamps.sort()
    deltas = {b - a for a, b in zip(stamps, stamps[1:]) if b > a}
    rotation = round(first.rotation or 0) % 360
    rotation = 90 * round(rotation / 90) % 360  # phones write multiples of 90; anything else is shown as stored
    if rotation in (90, 270):
        width, height = height, width
    fps = float(stream.average_rate) if stream.average_rate else None
    return VideoInfo(_duration(container, stream), width, height, rotation, fps,
                     variable_frame_rate=len(deltas) > 1 and max(deltas) - min(deltas) > 1,
                     created=_created(container, stream), codec=stream.codec_context.name)


def _duration(container: Any, stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return 0.0  # unknown (a raw stream): sampling runs to the last frame


def _stream_start(stream: Any) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _keyframe_times(stream: Any) -> list[float]:
    """Keyframe times from the container's index (mp4, mkv, webm and avi carry one), sorted; [] without one."""
    try:
        entries = stream.index_entries
        base = Fraction(stream.time_base)
        start = _stream_start(stream)
        return sorted(float(entry.timestamp * base) - start for entry in entries
                      if entry.flags & AVINDEX_KEYFRAME)
    except (AttributeError, TypeError):
        return []


def _seek_first(keyframes: list[float], target: float, last: float) -> bool:
    """Whether reaching target decodes less by seeking than by decoding on from the frame at `last`."""
    if target <= last:
        return True  # behind the decoder: only a seek goes back
    if not keyframes:
        return True
    before = bisect_right(keyframes, target + 1e-6) - 1
    return before >= 0 and keyframes[before] > last + 1e-6


CREATION_KEYS = ("com.apple.quicktime.creationdate", "creation_time", "date")


def _created(container: Any, stream: Any) -> dt.datetime | None:
    for metadata in (container.metadata, stream.metadata):
        for key in CREATION_KEYS:
            value = metadata.get(key)
            if not value:
                continue
            try:
                moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                continue
            if moment.year >= 1971:  # unset mp4 dates read as 1904 or 1970
                return moment
    return None


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)
