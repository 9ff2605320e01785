"""Videos (issue 20): indexing speed, frame sampling and search latency, each part in one run.

indexing (default): a 10-minute 1080p H.264 file (keyframes every second, as phones write) at the default 2 s
interval, as multiples of real time, side by side in one run: `Engine.ingest` of a folder holding it (end to
end: sampling, preprocessing, the encoder, both stores), the sampler alone, preprocessing alone, and the
encoder alone on the same preprocessed frames. The encoder is the one the other ingest benchmarks use: RN50
with random weights on the default CPU path (OpenVINO when installed).

search (default): p50 latency of text queries (`Engine.search_text`, top 24) in a library of 180,000 video
frames (100 hours sampled every 2 s, 1,000 videos of 6 minutes) beside 180,000 pictures, for all media, videos
only and pictures only, against a library of the 180,000 pictures alone. Synthetic 1024-d vectors (RN50's
dimension); neighbouring frames of a video are alike, as real ones are, so hits gather into segments.

duplicates (default): `video_duplicate_groups` on 3,000 synthetic videos of 5 to 60 s with 60 planted copies,
against the picture rule (the all-pairs scan) run on every one of their frames.

sampling (`--only sampling`): three ways to get one 448 px RGB frame every 2 s, as multiples of real time
(video seconds per wall second) and core-seconds (the process's CPU time, which other work on a shared
machine disturbs less):
- `sample_frames`: seek to each sample, or decode on when the decoder is already past the keyframe before it;
  with one decoder thread and with two;
- decode every frame (FFmpeg's frame threads on both cores) and keep the first at or after each sample time;
- keyframes only (`skip_frame = "NONKEY"`): the floor for any sampler, but it yields a frame per keyframe,
  not per interval.

Two files, written once into the bench cache: a keyframe every second (as phones write) and every 250 frames
(x264's default, 8.3 s at 30 fps). 1080p at 30 fps, x264 `veryfast` at CRF 20 with a grainy textured picture,
moving squares and a colour that changes each second, so P-frames carry real residuals (about 6 Mbit/s).
Usage: python -m bench.bench_video [--only indexing,search,duplicates,sampling] [--minutes 10] [--frames 180000]
       [--queries 100] [--videos 3000] [--no-frame-scan] [--trials 1] [--gop 30|250] [--ways seek,keyframes] [--all]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from bench._common import QUERIES, cache_dir, machine, percentiles, quiet_logs, random_checkpoint, table, write_result
from bench.bench_query import synthetic_vectors
from searchcore.config import Settings
from searchcore.duplicates import FrameSequence, duplicate_groups, video_duplicate_groups
from searchcore.engine import Engine
from searchcore.models.encoder import Encoder, load_encoder
from searchcore.sources.videos import DEFAULT_INTERVAL, DEFAULT_MAX_SIDE, probe_video, sample_frames
from searchcore.stores.filters import Filters
from searchcore.stores.images import StoredImage
from searchcore.stores.videos import StoredVideo

LIBRARY = "bench"
DIM = 1024  # RN50's
TOP_K = 24
VIDEOS = 1000  # 100 hours of 6-minute videos
SHOT_FRAMES = 5  # frames of one shot, alike (10 s at the default interval)
FIRST_FRAME, FIRST_VIDEO = 1_000_000_000, 2_000_000_000  # frame and video ids apart from the pictures' 1..n

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


def sampling(args: argparse.Namespace) -> tuple[list[str], list[Path]]:
    """Each way of sampling on each file: the report's lines and the JSON files written."""
    chosen = args.ways.split(",")
    lines, written = [], []
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
        written.append(result)
        lines += [f"\n{args.minutes}-minute 1920x1080 30 fps H.264, keyframes every {label}, one 448 px frame "
                  f"every {DEFAULT_INTERVAL:g} s; best of {args.trials}; {host['cpu']}, {host['cores']} cores",
                  table(["way", "frames kept", "decoded", "wall s", "core s", "x real time", "load"],
                        [[r["way"], r["kept"], r["decoded"], r["wall_s"], r["cpu_s"], r["x_real_time"],
                          r["load_avg_1m"]] for r in rows])]
    return lines, written


# Indexing: end to end against its stages alone


def clocked(work: Callable[[], Any]) -> tuple[Any, float, float]:
    """What work() returns, its wall seconds and the process's CPU seconds (all threads)."""
    start, cpu = time.perf_counter(), time.process_time()
    out = work()
    return out, time.perf_counter() - start, time.process_time() - cpu


def encoder_settings(batch: int) -> Settings:
    """RN50 with random weights on the default CPU path, as bench_ingest and bench_photos measure ingest."""
    return Settings(model=str(random_checkpoint("RN50")), model_dir=str(cache_dir() / "models"), device="cpu",
                    backend="auto", precision="auto", batch_size=batch, library=LIBRARY)


def fresh(parent: Path, name: str) -> Path:
    folder = parent / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def video_ingest(encoder: Encoder, settings: Settings, folder: Path, stores: Path) -> dict[str, Any]:
    """Engine.ingest of a folder holding the video into fresh stores: its report, wall and CPU seconds."""
    settings = settings.replace(milvus_uri=str(stores / "milvus.db"), db_url=str(stores / "images.db"))
    engine = Engine(settings, encoder=encoder)
    try:
        engine.vectors.open_library(LIBRARY, encoder.name, encoder.dim, create=True)
        report, wall, cpu = clocked(lambda: engine.ingest(folder, library=LIBRARY))
        frames = engine.images.count(LIBRARY)
    finally:
        engine.close()
    if report.bad:
        raise RuntimeError(f"the video was reported bad: {report.bad[0]}")
    return {"wall_s": wall, "cpu_s": cpu, "added": report.added, "frames_stored": frames}


def indexing(args: argparse.Namespace, work: Path) -> tuple[list[str], dict[str, Any]]:
    """The 10-minute file indexed end to end and each stage of it alone, one after the other."""
    path = video(args.minutes, FPS)
    duration = probe_video(path).duration
    settings = encoder_settings(args.batch)
    encoder = load_encoder(settings)
    folder = fresh(work, "videos")
    try:
        os.link(path, folder / path.name)  # the cached file itself, not a copy of 500 MB
    except OSError:
        shutil.copyfile(path, folder / path.name)
    host = machine()
    rows: list[dict[str, Any]] = []

    def row(stage: str, wall: float, cpu: float, frames: int, **extra: Any) -> None:
        rows.append({"stage": stage, "frames": frames, "wall_s": wall, "cpu_s": cpu, "x_real_time": duration / wall,
                     "x_real_time_per_core": duration / cpu if cpu else None, "load_avg_1m": os.getloadavg()[0],
                     **extra})
        print(rows[-1], flush=True)

    frames, wall, cpu = clocked(lambda: [f.image for f in sample_frames(path)])
    row("sampler alone (sample_frames, 448 px RGB)", wall, cpu, len(frames))
    pixels, wall, cpu = clocked(lambda: [encoder.preprocess(image) for image in frames])
    row("preprocessing alone (encoder.preprocess)", wall, cpu, len(pixels))
    batches = [(i, np.stack(pixels[i:i + args.batch])) for i in range(0, len(pixels), args.batch)]
    list(encoder.encode_pixel_batches(iter(batches[:4])))  # warm-up: compile, pick kernels
    alone: list[tuple[float, float]] = []
    ingests: list[dict[str, Any]] = []
    for trial in range(args.trials):
        _, wall, cpu = clocked(lambda: sum(len(v) for _, v in encoder.encode_pixel_batches(iter(batches))))
        alone.append((wall, cpu))
        ingests.append(video_ingest(encoder, settings, folder, fresh(work, f"stores{trial}")))
    wall, cpu = min(alone)
    row("encoder alone, the same frames preprocessed", wall, cpu, len(pixels))
    best = min(ingests, key=lambda r: r["wall_s"])
    row("Engine.ingest(folder) end to end", best["wall_s"], best["cpu_s"], best["frames_stored"], added=best["added"])
    result = {"minutes": args.minutes, "duration_s": duration, "file": path.name, "bytes": path.stat().st_size,
              "interval_s": DEFAULT_INTERVAL, "batch": args.batch, "trials": args.trials,
              "encoder": {"model": "RN50 random weights", **encoder.runtime()}, "machine": host, "rows": rows,
              "end_to_end_of_encoder_alone": rows[3]["x_real_time"] / rows[2]["x_real_time"]}
    runtime = result["encoder"]
    lines = [f"\nIndexing a {args.minutes}-minute 1920x1080 30 fps H.264 file (keyframes every second) at one frame "
             f"every {DEFAULT_INTERVAL:g} s: {len(frames)} frames; RN50 random weights, "
             f"{runtime['backend']} (image tower {runtime['precision'].get('image', '?')}), batch {args.batch}; "
             f"best of {args.trials}; {host['cpu']}, {host['cores']} cores, "
             f"load {host['load_avg_1m_start']:.1f} at start",
             table(["stage", "frames", "wall s", "core s", "x real time", "x real time per core", "load"],
                   [[r["stage"], r["frames"], r["wall_s"], r["cpu_s"], r["x_real_time"], r["x_real_time_per_core"],
                     r["load_avg_1m"]] for r in rows])]
    lines.append(f"end to end / encoder alone: {result['end_to_end_of_encoder_alone']:.2f}")
    return lines, result


# Search: text queries beside 100 hours of video frames


def frame_vectors(videos: int, per_video: int, shot: int = SHOT_FRAMES) -> np.ndarray:
    """Normalised frame vectors, video after video: each shot's frames are one draw plus a little noise."""
    shots = synthetic_vectors(videos * per_video // shot + 1, DIM, seed=3)
    rng = np.random.default_rng(4)
    out = np.empty((videos * per_video, DIM), dtype=np.float32)
    for start in range(0, len(out), 65536):
        rows = np.arange(start, min(len(out), start + 65536))
        block = shots[rows // shot] + 0.02 * rng.standard_normal((len(rows), DIM), dtype=np.float32)
        out[start:start + len(rows)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def fill(engine: Engine, library: str, model: str, pictures: np.ndarray, frames: np.ndarray | None,
         per_video: int) -> float:
    """Both stores filled directly (no encoder): tiny JPEG rows, vectors with their filter fields; seconds."""
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 120, 40)).save(jpeg, format="JPEG")
    data = jpeg.getvalue()
    start = time.perf_counter()
    engine.vectors.open_library(library, model, DIM, create=True)
    for lo in range(0, len(pictures), 2000):
        ids = list(range(lo + 1, min(len(pictures), lo + 2000) + 1))
        attrs = [(f"photos/{i % 97:02d}/IMG_{i:06d}.jpg", 1_500_000_000 + i * 600) for i in ids]
        engine.images.put_many(library, [StoredImage(i, data, "JPEG", 8, 8, f"{i:064x}", path=path, taken=taken)
                                         for i, (path, taken) in zip(ids, attrs)])
        engine.vectors.upsert(library, ids, pictures[lo:lo + len(ids)], attrs)
    if frames is not None:
        videos = len(frames) // per_video
        engine.images.put_videos(library, [
            StoredVideo(FIRST_VIDEO + v, f"videos/{v // 50:02d}/VID_{v:04d}.mp4", 50_000_000, 10**18, f"{v:064x}",
                        per_video * DEFAULT_INTERVAL, 1920, 1080, 1_600_000_000 + v * 3600, DEFAULT_INTERVAL)
            for v in range(videos)])
        for lo in range(0, len(frames), 1800):
            rows = range(lo, min(len(frames), lo + 1800))
            ids = [FIRST_FRAME + r for r in rows]
            video = [(FIRST_VIDEO + r // per_video, r % per_video * DEFAULT_INTERVAL) for r in rows]
            attrs = [(f"videos/{(v - FIRST_VIDEO) // 50:02d}/VID_{v - FIRST_VIDEO:04d}.mp4",
                      1_600_000_000 + (v - FIRST_VIDEO) * 3600) for v, _ in video]
            engine.images.put_many(library, [
                StoredImage(i, data, "JPEG", 8, 8, f"{i:064x}", path=path, taken=taken, thumbnail=True, video_id=v,
                            time_s=t) for i, (path, taken), (v, t) in zip(ids, attrs, video)])
            engine.vectors.upsert(library, ids, frames[lo:lo + len(ids)], attrs, video)
    engine.vectors.flush(library)
    if not engine.vectors.wait_for_copy(library, timeout=1200):  # type: ignore[attr-defined]
        raise RuntimeError("the exact in-process copy did not load")
    return time.perf_counter() - start


def search(args: argparse.Namespace, work: Path) -> tuple[list[str], dict[str, Any]]:
    """p50 of text queries over pictures and 100 hours of video frames, against the pictures alone."""
    per_video = args.frames // VIDEOS
    settings = encoder_settings(8).replace(milvus_uri=str(work / "search" / "milvus.db"),
                                           db_url=str(work / "search" / "images.db"))
    (work / "search").mkdir(parents=True, exist_ok=True)
    encoder = load_encoder(settings)
    pictures = synthetic_vectors(args.frames, DIM, seed=2)
    frames = frame_vectors(VIDEOS, per_video)
    texts = [QUERIES[i % len(QUERIES)] + ("" if i < len(QUERIES) else f" {i}") for i in range(args.queries + 3)]
    engine = Engine(settings, encoder=encoder)
    try:
        built = {"mixed": fill(engine, "mixed", encoder.name, pictures, frames, per_video),
                 "pictures": fill(engine, "pictures", encoder.name, pictures, None, per_video)}
        del frames
        host = machine()
        cases = {("mixed", "all"): None, ("mixed", "video"): Filters.parse(media="video"),
                 ("mixed", "image"): Filters.parse(media="image"), ("pictures", "all"): None}
        samples: dict[tuple[str, str, bool], list[float]] = {(*case, e): [] for case in cases for e in (True, False)}
        moments: dict[tuple[str, str], int] = {case: 0 for case in cases}
        encode: list[float] = []
        for n, text in enumerate(texts):  # the cases interleaved query by query, so load hits them alike
            start = time.perf_counter()
            vector = encoder.encode_texts([text])
            if n >= 3:  # the first queries warm caches up
                encode.append((time.perf_counter() - start) * 1000)
            for (library, media), filters in cases.items():
                for encoded in (True, False):
                    if not encoded:  # the text's vector is ready: the search alone
                        encoder.encode_texts = lambda texts, v=vector: v  # type: ignore[method-assign]
                    start = time.perf_counter()
                    results = engine.search_text(text, TOP_K, library, filters=filters, mode="semantic")
                    ms = (time.perf_counter() - start) * 1000
                    vars(encoder).pop("encode_texts", None)
                    if n >= 3:
                        samples[(library, media, encoded)].append(ms)
                        moments[(library, media)] += sum(r.video is not None for r in results) if encoded else 0
                    if len(results) != TOP_K:
                        raise RuntimeError(f"{library}/{media}: {len(results)} results, not {TOP_K}")
    finally:
        engine.close()
    base = {encoded: percentiles(samples[("pictures", "all", encoded)])["p50_ms"] for encoded in (True, False)}
    rows = []
    for library, media in cases:
        query, alone = (percentiles(samples[(library, media, encoded)]) for encoded in (True, False))
        rows.append({"library": f"{args.frames:,} frames + {args.frames:,} pictures" if library == "mixed"
                     else f"{args.frames:,} pictures alone", "media": media, **query,
                     "over_pictures_alone": query["p50_ms"] / base[True], "search_alone": alone,
                     "search_alone_over_pictures_alone": alone["p50_ms"] / base[False],
                     "moments_per_page": moments[(library, media)] / args.queries})
    result = {"frames": args.frames, "videos": VIDEOS, "frames_per_video": per_video, "pictures": args.frames,
              "dim": DIM, "top_k": TOP_K, "queries": args.queries, "build_s": built, "machine": host, "rows": rows,
              "text_encode": percentiles(encode), "encoder": {"model": "RN50 random weights", **encoder.runtime()}}
    lines = [f"\nText queries (`Engine.search_text`, semantic, top {TOP_K}), {args.queries} each, interleaved: "
             f"{VIDEOS:,} videos of {per_video} frames ({args.frames * DEFAULT_INTERVAL / 3600:.0f} h at "
             f"{DEFAULT_INTERVAL:g} s) beside {args.frames:,} pictures, and the pictures alone; {DIM}-d synthetic "
             f"vectors; encoding the text alone p50 {result['text_encode']['p50_ms']:.1f} ms (\"search alone\": the "
             f"same query with its vector ready); {host['cpu']}, "
             f"{host['cores']} cores, load {host['load_avg_1m_start']:.1f} at start",
             table(["library", "media", "text query p50 ms", "p95 ms", "p50 / pictures alone",
                    "search alone p50 ms", "p50 / pictures alone", "moments per page"],
                   [[r["library"], r["media"], r["p50_ms"], r["p95_ms"], r["over_pictures_alone"],
                     r["search_alone"]["p50_ms"], r["search_alone_over_pictures_alone"], r["moments_per_page"]]
                    for r in rows])]
    return lines, result


# Duplicates: videos compared by their frame sequences


def planted_videos(count: int, copies: int, seed: int = 0) -> tuple[list[FrameSequence], set[frozenset[int]]]:
    """`count` videos of 5 to 60 s (a frame every 2 s, shots of 5 frames) and a re-encoded-like copy of the
    first `copies` (each frame's vector with a little noise, times 0.05 s later, 0.1 s longer); the pairs."""
    rng = np.random.default_rng(seed)
    lengths = rng.uniform(5, 60, count)
    sizes = (lengths // DEFAULT_INTERVAL).astype(int) + 1
    vectors = frame_vectors(1, int(sizes.sum()))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    videos = [FrameSequence(v + 1, np.arange(sizes[v]) * DEFAULT_INTERVAL, vectors[starts[v]:starts[v + 1]],
                            float(lengths[v]), DEFAULT_INTERVAL) for v in range(count)]
    planted = set()
    for v in range(copies):
        noisy = videos[v].vectors + 0.003 * rng.standard_normal(videos[v].vectors.shape, dtype=np.float32)
        videos.append(FrameSequence(count + v + 1, videos[v].times + 0.05, noisy, videos[v].duration + 0.1,
                                    DEFAULT_INTERVAL))
        planted.add(frozenset({v + 1, count + v + 1}))
    return videos, planted


def duplicates(args: argparse.Namespace, work: Path) -> tuple[list[str], dict[str, Any]]:
    """video_duplicate_groups on planted copies against the picture rule's all-pairs scan of the same frames."""
    videos, planted = planted_videos(args.videos, args.videos // 50)
    frames = np.concatenate([v.vectors for v in videos])
    owner = np.repeat([v.video_id for v in videos], [len(v.times) for v in videos])
    host = machine()
    groups, wall, cpu = clocked(lambda: video_duplicate_groups(videos))
    found = {frozenset(v.video_id for v in g.videos) for g in groups}
    rows = [{"way": "video_duplicate_groups (sequences)", "wall_s": wall, "cpu_s": cpu,
             "planted_found": len(found & planted), "other_groups": len(found - planted)}]
    print(rows[-1], flush=True)
    if not args.no_frame_scan:
        frame_groups, wall, cpu = clocked(lambda: duplicate_groups(range(len(frames)), frames))
        by_video = {frozenset(int(owner[i]) for i in g.images) for g in frame_groups}
        rows.append({"way": "the picture rule on every frame (duplicate_groups)", "wall_s": wall, "cpu_s": cpu,
                     "planted_found": len({g for g in by_video if g in planted}),
                     "other_groups": len([g for g in by_video if g not in planted])})
        print(rows[-1], flush=True)
    result = {"videos": len(videos), "frames": len(frames), "planted": len(planted), "dim": DIM, "machine": host,
              "rows": rows}
    lines = [f"\nDuplicates among {len(videos):,} videos of 5-60 s ({len(frames):,} frames, {DIM}-d), "
             f"{len(planted)} planted copies; {host['cpu']}, {host['cores']} cores, "
             f"load {host['load_avg_1m_start']:.1f} at start",
             table(["way", "wall s", "core s", "planted pairs found", "other groups"],
                   [[r["way"], r["wall_s"], r["cpu_s"], f"{r['planted_found']}/{len(planted)}", r["other_groups"]]
                    for r in rows])]
    return lines, result


def main(argv: list[str] | None = None) -> None:
    """Run the chosen parts, print their tables and write their JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="indexing,search,duplicates",
                        help="comma-separated: indexing,search,duplicates,sampling")
    parser.add_argument("--minutes", type=int, default=10, help="length of the test file (default 10)")
    parser.add_argument("--batch", type=int, default=8, help="encoder batch size (the engine's default is 8)")
    parser.add_argument("--trials", type=int, default=1, help="runs of each timing; the best is kept (1)")
    parser.add_argument("--frames", type=int, default=180_000, help="video frames for search (default 180,000)")
    parser.add_argument("--queries", type=int, default=100, help="timed text queries per media (default 100)")
    parser.add_argument("--videos", type=int, default=3000, help="videos for duplicates (default 3,000)")
    parser.add_argument("--no-frame-scan", action="store_true", help="duplicates: skip the all-frames scan")
    parser.add_argument("--gop", type=int, action="append", choices=sorted(GOPS.values()),
                        help="sampling: only the file with this keyframe spacing (repeatable; default both)")
    parser.add_argument("--ways", default=",".join(WAYS), help=f"sampling: comma-separated, of {', '.join(WAYS)}")
    parser.add_argument("--all", action="store_true", help="sampling: every way on both files")
    args = parser.parse_args(argv)
    quiet_logs()
    parts = [p for p in args.only.split(",") if p]
    lines: list[str] = []
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="bench_video_") as tmp:
        if "indexing" in parts:
            more, result = indexing(args, Path(tmp))
            lines += more
            written.append(write_result("video_indexing", result))
        if "search" in parts:
            more, result = search(args, Path(tmp))
            lines += more
            written.append(write_result("video_search", result))
        if "duplicates" in parts:
            more, result = duplicates(args, Path(tmp))
            lines += more
            written.append(write_result("video_duplicates", result))
    if "sampling" in parts:
        more, files = sampling(args)
        lines += more
        written += files
    print("\n".join(lines))
    print(f"\nwrote {', '.join(map(str, written))}")


if __name__ == "__main__":
    main()
