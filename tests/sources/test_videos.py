"""The video frame sampler (issue 20): the right frame at each sample time, upright, from little decoding.

Every video is written here with PyAV: a grey picture with a coloured square whose colour changes at known
times, so the colour at the square's centre tells which moment a sampled frame shows.
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from searchcore.errors import VideoDecodeError
from searchcore.sources.videos import VIDEO_SUFFIXES, probe_video, sample_frames

RED, GREEN, BLUE, YELLOW = (230, 30, 30), (30, 200, 40), (30, 40, 220), (240, 220, 20)
GREY = (128, 128, 128)


def picture(size: tuple[int, int], colour: tuple[int, int, int]) -> np.ndarray:
    """A grey frame with a square of `colour` in the middle, as an RGB array."""
    width, height = size
    pixels = np.full((height, width, 3), GREY, np.uint8)
    side = min(width, height) // 2
    top, left = (height - side) // 2, (width - side) // 2
    pixels[top:top + side, left:left + side] = colour
    return pixels


def write_video(path: Path, frames: list[tuple[float, np.ndarray]], duration: float | None = None, gop: int = 25,
                rotation: int = 0, created: str | None = None, options: dict[str, str] | None = None) -> Path:
    """A video in the container path's suffix names, one frame per (time in seconds, RGB array).

    H.264 (VP9 in webm, MPEG-4 part 2 in avi) with timestamps in milliseconds (frame numbers at 25 fps in avi).
    """
    codec = {".webm": "libvpx-vp9", ".avi": "mpeg4"}.get(path.suffix, "libx264")
    with av.open(str(path), "w", options=options or {}) as container:
        if created:
            container.metadata["creation_time"] = created
        stream = container.add_stream(codec, rate=25)
        stream.height, stream.width = frames[0][1].shape[:2]
        stream.pix_fmt = "yuv420p"
        tick = Fraction(1, 25) if codec == "mpeg4" else Fraction(1, 1000)
        stream.time_base = stream.codec_context.time_base = tick
        stream.options = {"g": str(gop), "keyint_min": str(gop), "bf": "0",
                          **({"preset": "ultrafast"} if codec == "libx264" else {}),
                          **({"deadline": "realtime", "cpu-used": "8"} if codec == "libvpx-vp9" else {})}
        if rotation:
            stream.set_display_rotation(rotation)
        for time, pixels in frames:
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = round(time / tick), tick
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def steady(schedule: list[tuple[float, tuple[int, int, int]]], duration: float, fps: float,
           size: tuple[int, int] = (96, 64)) -> list[tuple[float, np.ndarray]]:
    """Frames at a constant rate; each shows the colour of the last schedule entry at or before its time."""
    count = round(duration * fps)
    return [(i / fps, picture(size, colour_at(schedule, i / fps))) for i in range(count)]


def colour_at(schedule: list[tuple[float, tuple[int, int, int]]], time: float) -> tuple[int, int, int]:
    return [colour for start, colour in schedule if start <= time + 1e-9][-1]


def centre(image: Image.Image) -> tuple[int, int, int]:
    return image.getpixel((image.width // 2, image.height // 2))


def near(actual: tuple[int, ...], expected: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 24 for a, b in zip(actual, expected))


SCHEDULE = [(0.0, RED), (3.0, GREEN), (7.0, BLUE)]


@pytest.fixture(scope="module")
def ten_seconds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 s at 25 fps: red, green from 3 s, blue from 7 s; a keyframe every second; a creation time."""
    path = tmp_path_factory.mktemp("videos") / "clip.mp4"
    return write_video(path, steady(SCHEDULE, 10, 25), created="2024-05-01T10:20:30.000000Z")


def test_frames_every_two_seconds_show_what_was_on_screen_then(ten_seconds: Path) -> None:
    frames = list(sample_frames(ten_seconds))
    assert [frame.time for frame in frames] == [0, 2, 4, 6, 8]
    assert [near(centre(frame.image), colour) for frame, colour in zip(frames, [RED, RED, GREEN, GREEN, BLUE])] == [
        True] * 5
    assert all(frame.image.mode == "RGB" for frame in frames)


def test_off_grid_samples_take_the_first_frame_at_or_after_their_time(ten_seconds: Path) -> None:
    frames = list(sample_frames(ten_seconds, interval=1.5))
    targets = [1.5 * k for k in range(7)]  # 0 .. 9 s
    assert len(frames) == len(targets)
    for frame, target in zip(frames, targets):
        assert target <= frame.time < target + 1 / 25 + 1e-6
        assert near(centre(frame.image), colour_at(SCHEDULE, frame.time))


@pytest.mark.parametrize("suffix", [".mov", ".mkv", ".webm", ".avi"])
def test_other_containers_and_codecs_are_sampled_alike(tmp_path: Path, suffix: str) -> None:
    path = write_video(tmp_path / f"clip{suffix}", steady(SCHEDULE, 8, 25))
    frames = list(sample_frames(path, interval=2.4))
    assert [frame.time for frame in frames] == pytest.approx([0, 2.4, 4.8, 7.2], abs=1e-3)
    assert all(near(centre(frame.image), colour_at(SCHEDULE, frame.time)) for frame in frames)


def test_frames_are_reduced_to_max_side_keeping_the_shape(tmp_path: Path) -> None:
    path = write_video(tmp_path / "wide.mkv", steady([(0.0, YELLOW)], 2, 5, size=(640, 360)))
    frames = list(sample_frames(path, max_side=160))
    assert [frame.image.size for frame in frames] == [(160, 90)]
    assert near(centre(frames[0].image), YELLOW)


def test_probe_reads_duration_size_rate_codec_and_creation_time(ten_seconds: Path, tmp_path: Path) -> None:
    info = probe_video(ten_seconds)
    assert math.isclose(info.duration, 10, abs_tol=0.05)
    assert (info.width, info.height, info.rotation, info.codec) == (96, 64, 0, "h264")
    assert info.fps is not None and math.isclose(info.fps, 25, rel_tol=0.01)
    assert not info.variable_frame_rate
    assert info.created is not None and info.created.isoformat() == "2024-05-01T10:20:30+00:00"
    undated = write_video(tmp_path / "undated.webm", steady([(0.0, RED)], 1, 5))
    assert probe_video(undated).created is None


def test_variable_frame_rate_is_sampled_by_timestamps(tmp_path: Path) -> None:
    # 30 fps for 2 s, then 4 fps until 5 s, then one frame held 3 s (a screen recording's still), then 10 fps.
    times = [i / 30 for i in range(60)] + [2 + i / 4 for i in range(12)] + [5.0] + [8 + i / 10 for i in range(20)]
    schedule = [(0.0, RED), (2.0, GREEN), (5.0, BLUE), (8.0, YELLOW)]
    path = write_video(tmp_path / "vfr.mp4", [(t, picture((96, 64), colour_at(schedule, t))) for t in times])
    info = probe_video(path)
    assert info.variable_frame_rate
    frames = list(sample_frames(path, interval=1.0))
    # The first frame at or after each whole second: the still at 5 s covers 6 and 7, so it is sampled once.
    expected = [next(t for t in times if t >= target - 1e-6) for target in (0, 1, 2, 3, 4, 5, 8, 9)]
    assert [frame.time for frame in frames] == pytest.approx(expected, abs=1e-3)
    assert all(near(centre(frame.image), colour_at(schedule, frame.time)) for frame in frames)


def tkhd_matrix(path: Path) -> tuple[int, ...]:
    """The video track header's display matrix (a, b, u, c, d, v, x, y, w) as stored in the mp4."""
    data = path.read_bytes()
    at = data.index(b"tkhd")
    version = data[at + 4]
    # version 0: flags 3, created 4, modified 4, track 4, reserved 4, duration 4, reserved 8, layer 2,
    # alternate 2, volume 2, reserved 2, then the matrix (version 1 has 8-byte times and duration).
    offset = at + 8 + (32 if version == 0 else 44) + 8 - 4
    return struct.unpack(">9i", data[offset:offset + 36])


def test_a_portrait_phone_video_is_sampled_upright(tmp_path: Path) -> None:
    # A phone held upright records its sensor's landscape frames and a display matrix that turns them 90 degrees
    # clockwise. The frames here are the upright picture turned the other way, as the sensor sees it.
    upright = np.full((96, 54, 3), GREY, np.uint8)
    upright[:30] = RED  # the top
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # counter-clockwise: 54 high, 96 wide
    path = write_video(tmp_path / "portrait.mov", [(i / 5, stored) for i in range(10)], rotation=-90)
    one = 1 << 16
    # The matrix an iPhone writes for a portrait video (ffprobe: "rotation of -90.00 degrees").
    assert tkhd_matrix(path)[:5] == (0, one, 0, -one, 0)
    info = probe_video(path)
    assert (info.width, info.height, info.rotation) == (54, 96, 270)
    image = next(iter(sample_frames(path))).image
    assert image.size == (54, 96)
    assert near(image.getpixel((27, 5)), RED) and near(image.getpixel((27, 90)), GREY)


def long_video(path: Path, hours: float, fps: int, size: tuple[int, int] = (64, 36)) -> Path:
    """Red and blue a minute each in turn, 64x36 (or size) at fps, a keyframe every second."""
    # Encoding four hours frame by frame is slow, so one second of frames (a keyframe and 9 P-frames, 10 fps,
    # closed GOPs) is encoded once per colour and its packets are muxed again and again with shifted times:
    # a valid H.264 stream of 144,000 frames that the decoder has to decode like any other.
    seconds = round(hours * 3600)
    width, height = size
    encoded: dict[tuple[int, int, int], list[tuple[bytes, int, bool]]] = {}
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(fps), "bf": "0", "keyint_min": str(fps)}
        for colour in (RED, BLUE):
            scratch = av.CodecContext.create("libx264", "w")
            scratch.width, scratch.height, scratch.pix_fmt = width, height, "yuv420p"
            scratch.time_base, scratch.framerate = Fraction(1, fps), Fraction(fps)
            scratch.options = dict(stream.options)
            packets = []
            for i in range(fps):
                frame = av.VideoFrame.from_ndarray(picture(size, colour), format="rgb24")
                frame.pts = i
                packets += scratch.encode(frame)
            packets += scratch.encode(None)
            encoded[colour] = [(bytes(p), p.pts, p.is_keyframe) for p in packets]
        stream.codec_context.extradata = scratch.extradata  # same settings, so the same SPS and PPS
        for second in range(seconds):
            colour = RED if (second // 60) % 2 == 0 else BLUE  # a minute of each, in turn
            for data, pts, key in encoded[colour]:
                packet = av.Packet(data)
                packet.pts = packet.dts = second * fps + pts
                packet.time_base, packet.is_keyframe, packet.stream = Fraction(1, fps), key, stream
                container.mux(packet)
    return path


SAMPLE_IN_A_FRESH_PROCESS = """
import json, re, sys
from searchcore.sources.videos import sample_frames

def peak_mb():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read())[1]) / 1024

before = peak_mb()
sampler = sample_frames(sys.argv[1], interval=float(sys.argv[2]), max_side=int(sys.argv[3]))
frames = [(f.time, f.image.size, f.image.getpixel((f.image.width // 2, f.image.height // 2))) for f in sampler]
print(json.dumps({"frames": frames, "decoded": sampler.decoded, "growth_mb": peak_mb() - before}))
"""


def sample_in_a_fresh_process(path: Path, interval: float, max_side: int) -> dict:
    """Sample in a new interpreter, whose peak resident memory (VmHWM) is the sampler's alone."""
    run = subprocess.run([sys.executable, "-c", SAMPLE_IN_A_FRESH_PROCESS, str(path), str(interval), str(max_side)],
                         capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.slow
def test_a_four_hour_video_decodes_a_small_share_of_its_frames(tmp_path: Path) -> None:
    hours, fps = 4, 10
    seconds = hours * 3600
    result = sample_in_a_fresh_process(long_video(tmp_path / "long.mp4", hours, fps), 2.0, 64)
    frames = result["frames"]
    assert len(frames) == seconds // 2
    assert [frame[0] for frame in frames[:3] + frames[-2:]] == [0, 2, 4, seconds - 4, seconds - 2]
    for time, _, colour in frames[::97]:
        assert near(tuple(colour), RED if (time // 60) % 2 == 0 else BLUE), time
    assert result["decoded"] < seconds * fps / 8, result["decoded"]  # one frame a sample here: 7,200 of 144,000
    assert result["growth_mb"] < 150, result["growth_mb"]  # 41 MB measured


@pytest.mark.slow
def test_an_8k_video_is_sampled_with_bounded_memory(tmp_path: Path) -> None:
    path = write_video(tmp_path / "8k.mp4", steady([(0.0, RED), (2.0, BLUE)], 3, 1, size=(7680, 4320)), gop=1)
    result = sample_in_a_fresh_process(path, 2.0, 448)
    assert [(time, tuple(size)) for time, size, _ in result["frames"]] == [(0, (448, 252)), (2, (448, 252))]
    assert near(tuple(result["frames"][0][2]), RED) and near(tuple(result["frames"][1][2]), BLUE)
    # An 8K frame is 50 MB in YUV 4:2:0; the decoder holds a few (160 MB measured), never the whole video.
    assert result["growth_mb"] < 400, result["growth_mb"]


def test_every_listed_suffix_is_a_video_suffix() -> None:
    assert {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"} <= VIDEO_SUFFIXES
    assert all(suffix.startswith(".") and suffix == suffix.lower() for suffix in VIDEO_SUFFIXES)


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        samples = (np.sin(np.arange(16000) / 16000 * 2 * np.pi * 440) * 0.3).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def empty_file(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def text_file(path: Path) -> Path:
    path.write_text("这不是视频, just some notes\n" * 20)
    return path


def truncated(path: Path, faststart: bool) -> Path:
    options = {"movflags": "faststart"} if faststart else None
    write_video(path, steady(SCHEDULE, 10, 25), options=options)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def garbled(path: Path) -> Path:
    write_video(path, steady(SCHEDULE, 10, 25), options={"movflags": "faststart"})
    data = bytearray(path.read_bytes())
    data[64:4096] = np.random.default_rng(0).integers(0, 256, 4096 - 64, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


BAD = {
    "empty.mp4": (empty_file, "empty (0 bytes)"),
    "notes.mp4": (text_file, "not a video"),
    "voice.mp4": (audio_only, "no video stream (audio only)"),
    "cut.mp4": (lambda p: truncated(p, faststart=False), "not a video"),
    "cut-faststart.mp4": (lambda p: truncated(p, faststart=True), "truncated or corrupt"),
    "garbled.mp4": (garbled, "no readable streams"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_raises_one_error_with_a_reason(tmp_path: Path, name: str) -> None:
    make, reason = BAD[name]
    path = make(tmp_path / name)
    with pytest.raises(VideoDecodeError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        list(sample_frames(path))
