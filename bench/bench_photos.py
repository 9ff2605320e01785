"""Photo libraries (issue 12): big-JPEG folder ingest, re-scan of an unchanged folder, filtered search.

Three measurements in one run, each side by side with its reference:

  1. Folder ingest of 12-megapixel JPEGs (4000x3000, photo-like, ~3-6 MB at quality 90) with RN50 (random
     weights) on the default CPU path: (a) `Engine.ingest(folder)` as it is, which decodes big JPEGs at
     reduced scale (libjpeg DCT scaling, `Image.draft`); (b) the same with that turned off (every pixel
     decoded); (c) the encoder alone on the preprocessed pixels. Fresh stores for every run.
  2. Re-scan of an unchanged folder of 10,000 small JPEGs in 100 sub-folders (tiny model, PyTorch fp32 for
     the first ingest): the second `Engine.ingest(folder)`, with every file read counted (should be none).
  3. Search with folder and date filters over 31,783 random 1024-d vectors (RN50's dimension) with paths in
     50 folders and dates over 2015-2025: unfiltered, folder (~2% of rows), year (~9%), folder + year, through
     the default path (Lite's exact in-process copy) and through Milvus Lite itself. Vector queries, top 24.

Generated photos and files live in the bench cache (bench/_common.py), so a re-run reuses them.

Usage: python -m bench.bench_photos [--only photos,rescan,filters] [--photos 40] [--files 10000]
       [--vectors 31783] [--queries 200] [--repeat 3] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import hashlib
import io
import os
import pstats
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

import searchcore.sources.imaging
from bench._common import ROOT, cache_dir, machine, percentiles, quiet_logs, random_checkpoint, table, write_result
from bench.bench_query import query_vectors, synthetic_vectors
from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.models.encoder import Encoder, load_encoder
from searchcore.records import naive_seconds
from searchcore.sources.imaging import decode_image
from searchcore.stores.filters import Filters
from searchcore.stores.image_db import open_image_store
from searchcore.stores.images import StoredImage

LIBRARY = "bench"
DIM = 1024
TOP_K = 24
TINY_MODEL = ROOT / "demo" / "tiny_clip.pt"
GOAL_DRAFT_OVER_FULL = 4.0
GOAL_OF_ENCODER = 0.6
GOAL_RESCAN_S = 3.0
GOAL_FILTERED_OVER_UNFILTERED = 1.5
FIRST_YEAR, LAST_YEAR = 2015, 2025


# Data


def photo_jpeg(seed: int, size: tuple[int, int], quality: int, grain: int) -> bytes:
    """A photo-like JPEG: a smooth scene with blurred shapes, a mid-frequency texture and sensor grain, and
    the EXIF a camera writes (upright orientation, DateTimeOriginal)."""
    rng = np.random.default_rng(seed)
    w, h = size
    scene = Image.fromarray(rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)).resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(scene)
    for _ in range(12):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.03, 0.2) * w
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x - r, y - r * rng.uniform(0.4, 1), x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    scene = scene.filter(ImageFilter.GaussianBlur(6))
    texture = Image.fromarray(rng.normal(128, 22, (h // 6, w // 6)).clip(0, 255).astype(np.uint8))
    detail = np.asarray(texture.resize(size, Image.Resampling.BILINEAR), dtype=np.int16) - 128
    detail += rng.integers(-grain, grain + 1, (h, w), dtype=np.int16)
    pixels = np.clip(np.asarray(scene, dtype=np.int16) + detail[:, :, None], 0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 1
    exif.get_ifd(0x8769)[0x9003] = f"{2015 + seed % 11}:0{1 + seed % 9}:1{seed % 10} 10:3{seed % 10}:00"
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality, exif=exif)
    return buffer.getvalue()


def photo_folder(count: int, size: tuple[int, int], quality: int, grain: int) -> Path:
    """A folder of `count` big photo-like JPEGs in two sub-folders, cached."""
    root = cache_dir() / f"photos_{count}_{size[0]}x{size[1]}_q{quality}_g{grain}"
    done = root / ".done"
    if not done.is_file():
        shutil.rmtree(root, ignore_errors=True)
        for i in range(count):
            path = root / f"{2023 + i % 2}" / f"IMG_{i:04d}.JPG"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(photo_jpeg(i, size, quality, grain))
        done.touch()
    return root


def small_folder(count: int, folders: int, side: int = 64) -> Path:
    """A folder of `count` small distinct JPEGs spread over `folders` sub-folders, cached."""
    root = cache_dir() / f"files_{count}_in_{folders}_{side}px"
    done = root / ".done"
    if not done.is_file():
        shutil.rmtree(root, ignore_errors=True)
        rng = np.random.default_rng(0)
        for i in range(count):
            path = root / f"{2015 + (i % folders) // 12 % 11}" / f"{i % folders:03d}" / f"IMG_{i:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)  # noise: every file's content differs
            image = Image.fromarray(coarse).resize((side, side), Image.Resampling.BILINEAR)
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=90)
            path.write_bytes(buffer.getvalue())
        done.touch()
    return root


@contextlib.contextmanager
def counting_reads(root: Path) -> Iterator[list[str]]:
    """Every file under root read with Path.read_bytes (how the folder source reads) while inside."""
    reads: list[str] = []
    real = Path.read_bytes
    prefix = str(root)

    def read_bytes(path: Path) -> bytes:
        if str(path).startswith(prefix):
            reads.append(str(path))
        return real(path)

    Path.read_bytes = read_bytes  # type: ignore[method-assign,assignment]
    try:
        yield reads
    finally:
        Path.read_bytes = real  # type: ignore[method-assign]


@contextlib.contextmanager
def full_decode() -> Iterator[None]:
    """Turn off reduced-scale decoding: decode_image drafts only when the shorter side is BIG x the input."""
    before = searchcore.sources.imaging.BIG
    searchcore.sources.imaging.BIG = 1 << 30
    try:
        yield
    finally:
        searchcore.sources.imaging.BIG = before


def fresh(parent: Path, name: str) -> Path:
    folder = parent / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def stores(settings: Settings, folder: Path) -> Settings:
    return settings.replace(milvus_uri=str(folder / "milvus.db"), db_url=str(folder / "images.db"))


def profile_top(fn: Callable[[], Any], rows: int = 12) -> list[dict[str, Any]]:
    """cProfile of one call: the functions with the most cumulative time."""
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO()).stats  # type: ignore[attr-defined]
    ranked = sorted(stats.items(), key=lambda kv: -kv[1][3])[:rows]
    return [{"function": f"{Path(f).name}:{line}({name})", "cumulative_s": v[3], "own_s": v[2], "calls": v[1]}
            for (f, line, name), v in ranked]


# 1. Big JPEGs


def folder_ingest(encoder: Encoder, settings: Settings, root: Path, count: int) -> float:
    """Images/s of Engine.ingest(folder) into fresh stores (library created before the clock starts)."""
    engine = Engine(settings, encoder=encoder)
    try:
        engine.vectors.open_library(LIBRARY, encoder.name, encoder.dim, create=True)
        start = time.perf_counter()
        report = engine.ingest(root)
        seconds = time.perf_counter() - start
    finally:
        engine.close()
    assert not report.bad and report.added == count, (report.added, report.bad[:3])
    return report.added / seconds


def decode_stages(encoder: Encoder, root: Path, sample: int, work: Path) -> dict[str, Any]:
    """One thread, per image in ms: decode (reduced scale / every pixel; one sha256 and the thumbnail included)
    and preprocess, a 1/8-scale decode alone, one sha256, and the batched SQLite writes of the thumbnails (what
    a folder library stores now) and of the files' bytes (what it stored before), with each store's size."""
    files = sorted(root.rglob("*.JPG"))[:sample]
    datas = [f.read_bytes() for f in files]
    out: dict[str, Any] = {"sample": len(datas), "mean_mb": statistics.fmean(len(d) for d in datas) / 1e6}
    thumbnails: list[bytes] = []
    for label, context in (("reduced", contextlib.nullcontext), ("full", full_decode)):
        with context():
            decode_ms, prep_ms = [], []
            for data in datas:
                t0 = time.perf_counter()
                decoded = decode_image(data, None, encoder.resolution, thumbnail=True)
                if label == "reduced":
                    thumbnails.append(decoded.data)
                t1 = time.perf_counter()
                encoder.preprocess(decoded.image)
                decode_ms.append((t1 - t0) * 1000)
                prep_ms.append((time.perf_counter() - t1) * 1000)
        out[label] = {"decoded_size": list(decoded.image.size), "decode_ms": statistics.fmean(decode_ms),
                      "preprocess_ms": statistics.fmean(prep_ms)}
    smallest = []
    for data in datas:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (1, 1))  # the smallest scale libjpeg offers: 1/8
        t0 = time.perf_counter()
        image.load()
        smallest.append((time.perf_counter() - t0) * 1000)
    out["eighth_scale_decode_ms"] = statistics.fmean(smallest)
    start = time.perf_counter()
    for data in datas:
        hashlib.sha256(data).digest()
    out["sha256_ms"] = (time.perf_counter() - start) * 1000 / len(datas)
    for label, blobs in (("store_write", thumbnails), ("original_store_write", datas)):
        folder = fresh(work, label)
        images = open_image_store(str(folder / "images.db"))
        try:
            start = time.perf_counter()
            for lo in range(0, len(blobs), 8):
                images.put_many(LIBRARY, [StoredImage(i + 1, blobs[i], "JPEG", 4000, 3000, str(i))
                                          for i in range(lo, min(len(blobs), lo + 8))])
            out[f"{label}_ms"] = (time.perf_counter() - start) * 1000 / len(blobs)
        finally:
            images.close()
        out[f"{label}_mb_per_1000"] = store_mb(folder) * 1000 / len(blobs)
    out["thumbnail_kb"] = statistics.fmean(len(t) for t in thumbnails) / 1e3
    return out


def store_mb(folder: Path) -> float:
    """The size of a SQLite image store in a folder (its WAL included), in MB."""
    return sum(p.stat().st_size for p in folder.glob("images.db*")) / 1e6


def cpu_bound(stages: dict[str, Any], encoder_alone: float) -> dict[str, Any]:
    """The best an ingest can do on these cores when every stage shares them with the encoder: per image, the
    encoder's core time plus decode (its one sha256 and the thumbnail included), preprocess and the SQLite
    write of the thumbnail."""
    cores = os.cpu_count() or 1
    encoder_core_ms = cores * 1000 / encoder_alone
    out: dict[str, Any] = {"encoder_core_ms": encoder_core_ms}
    for label in ("reduced", "full"):
        other = stages[label]["decode_ms"] + stages[label]["preprocess_ms"] + stages["store_write_ms"]
        out[label] = {"other_core_ms": other, "images_per_s": cores * 1000 / (encoder_core_ms + other),
                      "of_encoder": encoder_core_ms / (encoder_core_ms + other)}
    out["reduced_over_full"] = out["reduced"]["images_per_s"] / out["full"]["images_per_s"]
    return out


def big_photos(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    root = photo_folder(args.photos, args.photo_size, args.quality, args.grain)
    settings = Settings(model=str(random_checkpoint("RN50")), model_dir=str(cache_dir() / "models"), device="cpu",
                        backend="auto", precision="auto", batch_size=args.batch, library=LIBRARY)
    encoder = load_encoder(settings)
    files = sorted(root.rglob("*.JPG"))
    pixels = [encoder.preprocess(decode_image(f.read_bytes(), None, encoder.resolution).image) for f in files]
    batches = [(i, np.stack(pixels[i:i + args.batch])) for i in range(0, len(pixels), args.batch)]
    list(encoder.encode_pixel_batches(iter(batches)))  # warm-up: compile, pick kernels
    # and one untimed ingest, so no path pays for the first run's one-off costs (imports, thread start-up)
    folder_ingest(encoder, stores(settings, fresh(work, "warm-up")), root / "2023", len(files) - len(files) // 2)
    alone: list[float] = []
    today: list[float] = []
    full: list[float] = []
    for attempt in range(args.repeat):
        start = time.perf_counter()
        encoded = sum(len(v) for _, v in encoder.encode_pixel_batches(iter(batches)))
        alone.append(encoded / (time.perf_counter() - start))
        for path in ("reduced", "full") if attempt % 2 == 0 else ("full", "reduced"):  # neither always goes first
            with full_decode() if path == "full" else contextlib.nullcontext():
                ips = folder_ingest(encoder, stores(settings, fresh(work, f"{path}{attempt}")), root, len(files))
            (full if path == "full" else today).append(ips)
    runtime = encoder.runtime()
    stages = decode_stages(encoder, root, min(8, len(files)), work)
    rows = [{"path": "(a) Engine.ingest(folder): reduced-scale decode", "images_per_s": max(today), "runs": today},
            {"path": "(b) same, every pixel decoded (BIG off)", "images_per_s": max(full), "runs": full},
            {"path": "(c) encoder alone, preprocessed batches", "images_per_s": max(alone), "runs": alone}]
    return {"photos": len(files), "size": list(args.photo_size), "quality": args.quality, "grain": args.grain,
            "mean_mb": statistics.fmean(f.stat().st_size for f in files) / 1e6, "batch": args.batch,
            "repeat": args.repeat, "encoder": {"model": "RN50 random weights", **runtime}, "rows": rows,
            "a_over_b": max(today) / max(full), "a_over_c": max(today) / max(alone),
            "store_mb_per_1000_photos": store_mb(work / "reduced0") * 1000 / len(files),
            "stages_1_thread": stages, "bound": cpu_bound(stages, max(alone))}


# 2. Re-scan


def rescan(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    root = small_folder(args.files, args.file_folders)
    settings = Settings(model=str(TINY_MODEL), model_dir=str(cache_dir() / "models"), device="cpu",
                        backend="torch", precision="fp32", library=LIBRARY)
    engine = Engine(stores(settings, fresh(work, "rescan")))
    try:
        engine.encoder  # noqa: B018 - loaded before the clock starts
        start = time.perf_counter()
        first = engine.ingest(root)
        first_s = time.perf_counter() - start
        assert first.added == args.files and not first.bad, first.summary()
        times, reads = [], []
        for _ in range(args.rescans):
            with counting_reads(root) as read:
                start = time.perf_counter()
                again = engine.ingest(root)
                times.append(time.perf_counter() - start)
            reads.append(len(read))
            assert (again.added, again.unchanged) == (0, args.files), again.summary()
        profile = profile_top(lambda: engine.ingest(root)) if args.profile else []
    finally:
        engine.close()
    return {"files": args.files, "folders": args.file_folders, "encoder": "tiny model, torch fp32",
            "first_ingest_s": first_s, "first_images_per_s": args.files / first_s, "rescan_s": times,
            "rescan_median_s": statistics.median(times), "files_read": reads, "profile": profile}


# 3. Filtered search


def library_rows(n: int, folders: int, seed: int = 0) -> tuple[list[str], np.ndarray, list[str]]:
    """Paths in `folders` year/month folders ("2019/03/IMG_00001.jpg"), and dates over 2015-2025 drawn
    independently of the folder, so a folder and a year together keep about 0.2% of the rows."""
    names = [f"{FIRST_YEAR + i % 11}/{1 + 7 * i % 12:02d}" for i in range(folders)]
    rng = np.random.default_rng(seed)
    which = rng.integers(0, folders, n)
    start = naive_seconds(dt.datetime(FIRST_YEAR, 1, 1))
    end = naive_seconds(dt.datetime(LAST_YEAR + 1, 1, 1))
    taken = rng.integers(start, end, n)
    return [f"{names[w]}/IMG_{i:05d}.jpg" for i, w in enumerate(which)], taken, names


def build_library(settings: Settings, vectors: np.ndarray, paths: list[str], taken: np.ndarray) -> float:
    """Fill both stores directly (no encoder): tiny JPEG rows in SQLite, vectors with (path, taken) in Lite."""
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 120, 40)).save(jpeg, format="JPEG")
    data = jpeg.getvalue()
    engine = Engine(settings)
    start = time.perf_counter()
    try:
        engine.vectors.open_library(LIBRARY, "RN50 random weights", DIM, create=True)
        for lo in range(0, len(vectors), 2000):
            ids = list(range(lo + 1, min(len(vectors), lo + 2000) + 1))
            engine.images.put_many(LIBRARY, [StoredImage(i, data, "JPEG", 8, 8, f"{i:064x}", path=paths[i - 1],
                                                         taken=int(taken[i - 1])) for i in ids])
            engine.vectors.upsert(LIBRARY, ids, vectors[lo:lo + len(ids)],
                                  [(paths[i - 1], int(taken[i - 1])) for i in ids])
        engine.vectors.flush(LIBRARY)
    finally:
        engine.close()
    return time.perf_counter() - start


def filter_cases(names: list[str], queries: int) -> dict[str, list[Filters | None]]:
    """Per query, one filter of each kind; folders and years cycle so queries do not repeat a filter."""
    years = range(FIRST_YEAR, LAST_YEAR + 1)
    folder = [names[i % len(names)] for i in range(queries)]
    year = [years[i % len(years)] for i in range(queries)]
    return {"unfiltered": [None] * queries,
            "folder (~2%)": [Filters.parse(folder=f) for f in folder],
            "year (~9%)": [Filters.parse(since=f"{y}-01-01", until=f"{y}-12-31") for y in year],
            "folder + year (~0.2%)": [Filters.parse(folder=f, since=f"{y}-01-01", until=f"{y}-12-31")
                                      for f, y in zip(folder, year)]}


def measure_searches(engine: Engine, queries: np.ndarray, cases: dict[str, list[Filters | None]], warmup: int
                     ) -> tuple[dict[str, list[float]], dict[str, list[list[int]]]]:
    """Latency (ms) and hit ids of every query under every filter kind, the kinds interleaved query by query."""
    samples: dict[str, list[float]] = {kind: [] for kind in cases}
    found: dict[str, list[list[int]]] = {kind: [] for kind in cases}
    for i in range(len(queries)):
        for kind, filters in cases.items():
            start = time.perf_counter()
            hits = engine.vectors.search(LIBRARY, queries[i:i + 1], TOP_K, filters[i])[0]
            ms = (time.perf_counter() - start) * 1000
            if i >= warmup:
                samples[kind].append(ms)
            found[kind].append([h.image_id for h in hits])
    return samples, found


def check_hits(found: dict[str, list[list[int]]], cases: dict[str, list[Filters | None]], paths: list[str],
               taken: np.ndarray) -> int:
    """How many hits break their filter (must be 0); each search must return min(top-k, rows that pass)."""
    every = np.array(paths, dtype=object)
    wrong = 0
    for kind, per_query in found.items():
        for ids, filters in zip(per_query, cases[kind]):
            passing = len(paths) if filters is None else int(filters.mask(every, taken).sum())
            assert len(ids) == min(TOP_K, passing), (kind, len(ids), passing)
            if filters is not None:
                rows = [i - 1 for i in ids]
                wrong += int((~filters.mask(every[rows], taken[rows])).sum())
    return wrong


def filtered_search(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    vectors = synthetic_vectors(args.vectors, DIM)
    paths, taken, names = library_rows(args.vectors, args.folders)
    warmup = 3
    queries = query_vectors(args.queries + warmup, DIM)
    cases = filter_cases(names, len(queries))
    settings = stores(Settings(model=str(random_checkpoint("RN50")), model_dir=str(cache_dir() / "models"),
                               device="cpu", library=LIBRARY), fresh(work, "filters"))
    build_s = build_library(settings, vectors, paths, taken)
    shares = {kind: float(np.mean(f[0].mask(np.array(paths, dtype=object), taken))) if f[0] is not None else 1.0
              for kind, f in cases.items()}
    rows: list[dict[str, Any]] = []
    found_by: dict[str, dict[str, list[list[int]]]] = {}
    profile: list[dict[str, Any]] = []
    for label, exact_copy in (("Lite + exact in-process copy (default)", True), ("Milvus Lite itself", False)):
        engine = Engine(settings, exact_copy=exact_copy)
        try:
            start = time.perf_counter()
            if exact_copy:
                engine.vectors.search(LIBRARY, queries[:1], TOP_K)  # answered by Milvus; starts loading the copy
                if not engine.vectors.wait_for_copy(LIBRARY, timeout=600):  # type: ignore[attr-defined]
                    raise RuntimeError("the exact copy did not load")
            ready_s = time.perf_counter() - start
            samples, found = measure_searches(engine, queries, cases, warmup)
            if args.profile:
                def twenty_folder_searches(engine: Engine = engine) -> None:
                    for i in range(20):
                        engine.vectors.search(LIBRARY, queries[i:i + 1], TOP_K, cases["folder (~2%)"][i])

                profile += [{"store": label, **row} for row in profile_top(twenty_folder_searches, rows=8)]
        finally:
            engine.close()
        found_by[label] = found
        wrong = check_hits(found, cases, paths, taken)
        base = percentiles(samples["unfiltered"])["p50_ms"]
        for kind, ms in samples.items():
            stats = percentiles(ms)
            rows.append({"store": label, "filter": kind, "rows_kept": shares[kind], **stats,
                         "over_unfiltered": stats["p50_ms"] / base, "hits_breaking_filter": wrong,
                         **({"copy_load_s": ready_s} if exact_copy and kind == "unfiltered" else {})})
    copy, lite = found_by.values()
    agreement = {kind: float(np.mean([a == b for a, b in zip(copy[kind], lite[kind])])) for kind in cases}
    return {"vectors": args.vectors, "dim": DIM, "folders": args.folders, "years": f"{FIRST_YEAR}-{LAST_YEAR}",
            "queries": args.queries, "top_k": TOP_K, "build_s": build_s, "rows": rows,
            "same_ids_copy_and_lite": agreement, "profile": profile}


# Goals and report


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    if "photos" in result:
        p = result["photos"]
        out.append({"goal": f"big JPEGs: (a) >= {GOAL_DRAFT_OVER_FULL:.0f}x (b), the full-decode path",
                    "value": p["a_over_b"], "unit": "x", "met": p["a_over_b"] >= GOAL_DRAFT_OVER_FULL})
        out.append({"goal": f"big JPEGs: (a) >= {GOAL_OF_ENCODER} of (c), the encoder alone",
                    "value": p["a_over_c"], "unit": "", "met": p["a_over_c"] >= GOAL_OF_ENCODER})
    if "rescan" in result:
        r = result["rescan"]
        out.append({"goal": f"re-scan of {r['files']:,} unchanged files < {GOAL_RESCAN_S:.0f} s (median)",
                    "value": r["rescan_median_s"], "unit": " s", "met": r["rescan_median_s"] < GOAL_RESCAN_S})
        out.append({"goal": "re-scan reads no file", "value": max(r["files_read"]), "unit": " files",
                    "met": max(r["files_read"]) == 0})
    if "filters" in result:
        for row in result["filters"]["rows"]:
            if row["filter"] != "unfiltered":
                out.append({"goal": f"{row['store']}, {row['filter']}: p50 <= {GOAL_FILTERED_OVER_UNFILTERED}x "
                                    "unfiltered", "value": row["over_unfiltered"], "unit": "x",
                            "met": row["over_unfiltered"] <= GOAL_FILTERED_OVER_UNFILTERED})
    return out


def report(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"{m['cpu']}, {m['cores']} cores, AMX {'yes' if m['amx_tile'] else 'no'}, load "
             f"{m['load_avg_1m_start']:.1f} at start, {m['date']}", ""]
    if "photos" in result:
        p = result["photos"]
        enc = p["encoder"]
        lines += [f"1. Folder ingest, {p['photos']} JPEGs {p['size'][0]}x{p['size'][1]} q{p['quality']} "
                  f"(mean {p['mean_mb']:.1f} MB), RN50 random weights, {enc['backend']} "
                  f"{enc['precision']['image']}, batch {p['batch']}, best of {p['repeat']}",
                  table(("path", "img/s", "runs"), [(r["path"], r["images_per_s"],
                                                     " ".join(f"{v:.1f}" for v in r["runs"])) for r in p["rows"]]),
                  f"(a)/(b) = {p['a_over_b']:.2f}x, (a)/(c) = {p['a_over_c']:.2f}", ""]
        s = p["stages_1_thread"]
        lines += [f"One thread, per image (mean of {s['sample']}, {s['mean_mb']:.1f} MB):",
                  table(("decode", "decoded size", "decode ms", "preprocess ms"),
                        [(label, "x".join(map(str, s[label]["decoded_size"])), s[label]["decode_ms"],
                          s[label]["preprocess_ms"]) for label in ("reduced", "full")]),
                  f"1/8-scale decode alone: {s['eighth_scale_decode_ms']:.1f} ms; sha256: {s['sha256_ms']:.1f} ms; "
                  f"SQLite write: {s['store_write_ms']:.1f} ms (thumbnail, {s['thumbnail_kb']:.0f} KB), "
                  f"{s['original_store_write_ms']:.1f} ms (the original, as before)",
                  f"Image store per 1,000 photos: {p['store_mb_per_1000_photos']:.0f} MB after a folder ingest "
                  f"(thumbnails), {s['original_store_write_mb_per_1000']:.0f} MB with the originals stored (before)",
                  ""]
        b = p["bound"]
        lines += [f"Best on these cores, sharing them with the encoder ({b['encoder_core_ms']:.0f} core-ms/img):",
                  table(("decode", "other core-ms/img", "img/s at best", "of encoder alone"),
                        [(label, b[label]["other_core_ms"], b[label]["images_per_s"], b[label]["of_encoder"])
                         for label in ("reduced", "full")]),
                  f"best (a)/(b) = {b['reduced_over_full']:.2f}x", ""]
    if "rescan" in result:
        r = result["rescan"]
        lines += [f"2. Folder of {r['files']:,} small JPEGs in {r['folders']} sub-folders ({r['encoder']})",
                  table(("run", "seconds", "files read"),
                        [("first ingest", r["first_ingest_s"], "-")] +
                        [(f"re-scan {i + 1}, unchanged", s, n) for i, (s, n) in
                         enumerate(zip(r["rescan_s"], r["files_read"]))]), ""]
        if r["profile"]:
            lines += ["re-scan, cProfile (cumulative):"] + [
                f"  {p['cumulative_s']:6.2f} s  {p['own_s']:6.2f} own  {p['calls']:>7}  {p['function']}"
                for p in r["profile"]] + [""]
    if "filters" in result:
        f = result["filters"]
        wrong = sum(r["hits_breaking_filter"] for r in f["rows"] if r["filter"] == "unfiltered")
        lines += [f"3. Search, {f['vectors']:,} x {f['dim']}-d, {f['folders']} folders, dates {f['years']}, "
                  f"top {f['top_k']}, {f['queries']} queries (library built in {f['build_s']:.1f} s)",
                  table(("store", "filter", "rows kept", "p50 ms", "p95 ms", "p50 / unfiltered"),
                        [(r["store"], r["filter"], f"{r['rows_kept']:.1%}", r["p50_ms"], r["p95_ms"],
                          r["over_unfiltered"]) for r in f["rows"]]),
                  "same top-24 ids from both stores: " + ", ".join(
                      f"{k} {v:.0%}" for k, v in f["same_ids_copy_and_lite"].items()) +
                  f"; hits breaking their filter: {wrong}",
                  ""]
        if f["profile"]:
            lines += ["folder-filtered search, cProfile of 20 (cumulative):"] + [
                f"  {p['cumulative_s'] * 50:7.1f} ms/search  {p['store'][:12]:12}  {p['function']}"
                for p in f["profile"]] + [""]
    lines += [f"{'MET   ' if g['met'] else 'MISSED'} {g['goal']}: {g['value']:.2f}{g['unit']}" for g in result["goals"]]
    return "\n".join(lines)


def size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="photos,rescan,filters", help="comma-separated: photos,rescan,filters")
    parser.add_argument("--photos", type=int, default=40, help="big JPEGs to ingest (default 40)")
    parser.add_argument("--photo-size", type=size, default=(4000, 3000), help="WxH (default 4000x3000)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    parser.add_argument("--grain", type=int, default=8,
                        help="sensor grain, +-levels: 8 gives ~3.5 MB at 4000x3000 q90 (default 8)")
    parser.add_argument("--batch", type=int, default=8, help="encoder batch size (the engine's default is 8)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each ingest path; the best is kept (3)")
    parser.add_argument("--files", type=int, default=10_000, help="small files for the re-scan (default 10,000)")
    parser.add_argument("--file-folders", type=int, default=100, help="their sub-folders (default 100)")
    parser.add_argument("--rescans", type=int, default=3, help="timed re-scans (default 3)")
    parser.add_argument("--vectors", type=int, default=31_783, help="library size for filtered search (31,783)")
    parser.add_argument("--folders", type=int, default=50, help="folders of the library's paths (default 50)")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per filter kind (default 200)")
    parser.add_argument("--profile", action="store_true", help="profile one re-scan and 20 filtered searches")
    parser.add_argument("--result", default="photos", help="name of the bench/results/ file (default photos)")
    args = parser.parse_args(argv)
    parts = [p for p in args.only.split(",") if p]
    quiet_logs()
    started = machine()
    started["amx_tile"] = "amx_tile" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else False
    result: dict[str, Any] = {"benchmark": "photos", "machine": started}
    with tempfile.TemporaryDirectory(prefix="bench_photos_") as tmp:
        work = Path(tmp)
        seconds = {}
        for part, fn in (("photos", big_photos), ("rescan", rescan), ("filters", filtered_search)):
            if part in parts:
                start = time.perf_counter()
                result[part] = fn(args, work)
                seconds[part] = time.perf_counter() - start
                print(f"[{part}: {seconds[part]:.0f} s]", flush=True)
    result["seconds"] = seconds
    result["goals"] = goals(result)
    print(report(result))
    print(f"\nwrote {write_result(args.result, result)}")


if __name__ == "__main__":
    main()
