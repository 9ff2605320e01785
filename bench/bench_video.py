"""Video sampling (issue 20): searchcore's sampler on a 10-minute 1080p H.264 file at the default 2 s interval.

Three ways to get one 448 px RGB frame every 2 s, as multiples of real time (video seconds per wall second)
and core-seconds (the process's CPU time, which other work on a shared machine disturbs less):
- `sample_frames`: seek to each sample, or decode on when the decoder is already past the keyframe before it;
  with one decoder thread and with two;
- decode every frame (FFmpeg's frame threads on both cores) and keep the first at or after each sample time;
- keyframes only (`skip_frame = "NONKEY"`): the floor for any sampler, but it yields a frame per keyframe,
  not per interval.

Two files, written once into the bench cache: a keyframe every second (as phones write) and every 250 frames
(x264's default, 8.3 s at 30 fps). 1080p at 30 fps, x264 `veryfast` at CRF 20 with a grainy textured picture,
moving squares and a colour that changes each second, so P-frames carry real residuals (about 6 Mbit/s).
Usage: python -m bench.bench_video [--minutes 10] [--trials 1] [--gop 30|250] [--ways seek,keyframes] [--all]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from bench._common import cache_dir, machine, quiet_logs, table, write_result
from searchcore.sources.videos import DEFAULT_INTERVAL, DEFAULT_MAX_SIDE, probe_video, sample_frames

WIDTH, HEIGHT, FPS = 1920, 1080, 30
GOPS = {"1 s (phones)": FPS, "250 frames (x264 default)": 250}
SEGMENT = 750  # frames encoded; the file repeats them


def textures(count: int, seed: int = 0) -> list[np.ndarray]:
    """Grainy gradients in YUV 4:2:0 (planes stacked as PyAV's yuv420p arrays), one per second in turn."""
    rng = np.random.default_rng(seed)
    y = np.linspace(40, 200, WIDTH, dtype=np.float32)[None, :] + np.linspace(0, 30, HEIGHT, dtype=np.float32)[:, None]
    out = []
    for i in range(count):
        luma = np.clip(y + rng.normal(0, 12, (HEIGHT, WIDTH)), 0, 255).astype(np.uint8)
        chroma = np.full((HEIGHT // 2, WIDTH), 128 + (i * 37) % 64 - 32, np.uint8)  # U then V, each H/4 x W
        out.append(np.concatenate([luma, chroma]))
    return out


def video(minutes: int, gop: int) -> Path:
    """The cached 1080p30 H.264 test file with a keyframe every `gop` frames.

    Encoding 10 minutes of 1080p takes most of an hour on two busy cores, so 25 s (750 frames, a whole number
    of closed GOPs for both GOP lengths) are encoded once and their packets muxed again with shifted times
    until the file is `minutes` long: a valid stream the decoder decodes like any other of that length.
    """
    path = cache_dir() / f"video_{minutes}min_1080p30_gop{gop}.mp4"
    if path.is_file():
        return path
    tmp = path.with_suffix(".tmp.mp4")
    grains = textures(8)
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20", "g": str(gop), "keyint_min": str(gop),
                          "x264-params": "scenecut=0:open-gop=0"}
        packets: list[tuple[bytes, int, int, bool, Fraction]] = []

        def keep(encoded: list[av.Packet]) -> None:
            for packet in encoded:
                packets.append((bytes(packet), packet.pts, packet.dts, packet.is_keyframe, packet.time_base))
                container.mux(packet)

        for n in range(SEGMENT):
            pixels = grains[(n // FPS) % len(grains)].copy()
            x = (n * 7) % (WIDTH - 240)
            pixels[300:540, x:x + 240] = 235 - (n // FPS) * 23 % 180  # a moving square, its shade per second
            frame = av.VideoFrame.from_ndarray(pixels, format="yuv420p")
            frame.pts, frame.time_base = n, Fraction(1, FPS)
            keep(stream.encode(frame))
        keep(stream.encode(None))
        for repeat in range(1, minutes * 60 * FPS // SEGMENT):
            for data, pts, dts, key, base in packets:
                packet = av.Packet(data)
                shift = round(repeat * SEGMENT / FPS / base)
                packet.pts, packet.dts, packet.time_base = pts + shift, dts + shift, base
                packet.is_keyframe, packet.stream = key, stream
                container.mux(packet)
    tmp.replace(path)
    return path


def decode_everything(path: Path) -> Iterator[Any]:
    """Every frame decoded (frame threads), the first at or after each 2 s kept as a 448 px RGB picture."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        target = 0.0
        for frame in container.decode(stream):
            if frame.time >= target - 1e-6:
                scale = DEFAULT_MAX_SIDE / max(frame.width, frame.height)
                yield frame.reformat(width=round(frame.width * scale), height=round(frame.height * scale),
                                     format="rgb24").to_image()
                target += DEFAULT_INTERVAL


def keyframes_only(path: Path) -> Iterator[Any]:
    """Keyframes alone decoded (the decoder skips the rest), each kept as a 448 px RGB picture."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONKEY"
        for frame in container.decode(stream):
            scale = DEFAULT_MAX_SIDE / max(frame.width, frame.height)
            yield frame.reformat(width=round(frame.width * scale), height=round(frame.height * scale),
                                 format="rgb24").to_image()


WAYS: dict[str, Callable[[Path], Any]] = {
    "seek": sample_frames,  # sample_frames with one decoder thread, the default
    "seek, 2 threads": lambda path: sample_frames(path, threads=2),
    "decode every frame": decode_everything,
    "keyframes": keyframes_only,
}


def measure(frames: Callable[[], Any], duration: float, trials: int) -> dict[str, Any]:
    """Best wall time and CPU time of consuming frames(); what it kept and (for the sampler) decoded."""
    walls, cpus, kept, decoded = [], [], 0, None
    for _ in range(trials):
        source = frames()
        start, cpu = time.perf_counter(), time.process_time()
        kept = sum(1 for _ in source)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
        decoded = getattr(source, "decoded", None)
    wall = min(walls)
    return {"wall_s": wall, "cpu_s": min(cpus), "x_real_time": duration / wall, "kept": kept, "decoded": decoded}


def main() -> None:
    """Write the files if needed, time each way on each, print a table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--gop", type=int, action="append", choices=sorted(GOPS.values()),
                        help="only the file with this keyframe spacing (repeatable; default both)")
    parser.add_argument("--ways", default=",".join(WAYS), help=f"comma-separated, of {', '.join(WAYS)}")
    parser.add_argument("--all", action="store_true", help="every way on both files (decoding all frames twice)")
    args = parser.parse_args()
    quiet_logs()
    chosen = args.ways.split(",")
    for label, gop in GOPS.items():
        if args.gop and gop not in args.gop:
            continue
        rows: list[dict[str, Any]] = []
        start = time.perf_counter()
        path = video(args.minutes, gop)
        info = probe_video(path)
        made = {"path": path.name, "bytes": path.stat().st_size, "duration_s": info.duration,
                "mbit_s": path.stat().st_size * 8 / info.duration / 1e6, "frames": round(info.duration * FPS),
                "keyframes_every": label, "made_s": time.perf_counter() - start}
        host = machine()  # the load now, after any encoding
        ways = {way: frames for way, frames in WAYS.items() if way in chosen}
        if gop != FPS and not args.all:  # decoding every frame costs the same whatever the GOP: measured once
            ways = {way: frames for way, frames in ways.items() if way in ("seek", "keyframes")}
        for way, frames in ways.items():
            rows.append({"keyframes every": label, "way": way, "load_avg_1m": host["load_avg_1m_start"],
                         **measure(lambda f=frames, p=path: f(p), info.duration, args.trials)})
            print(rows[-1], flush=True)
            result = write_result(f"video_gop{gop}", {"minutes": args.minutes, "interval_s": DEFAULT_INTERVAL,
                                                      "file": made, "trials": args.trials, "av": av.__version__,
                                                      "machine": host, "rows": rows})
        print(f"\n{args.minutes}-minute 1920x1080 30 fps H.264, keyframes every {label}, one 448 px frame every "
              f"{DEFAULT_INTERVAL:g} s; best of {args.trials}; {host['cpu']}, {host['cores']} cores")
        print(table(["way", "frames kept", "decoded", "wall s", "core s", "x real time", "load"],
                    [[r["way"], r["kept"], r["decoded"], r["wall_s"], r["cpu_s"], r["x_real_time"], r["load_avg_1m"]]
                     for r in rows]))
        print(f"\nwrote {result}")


if __name__ == "__main__":
    main()
