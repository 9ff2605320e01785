"""Ingest throughput on a CUDA GPU in fp16: RN50 and ViT-B-16 (random weights), batch 1 against batched, JPEGs
decoded on the CPU against on the GPU.

Per architecture, on the same ~94 KB 500x375 JPEGs: the encoder alone on
preprocessed pixels, and `Engine.ingest` end to end from a Chinese-CLIP tsv
(decode pool, batching, SQLite image store, Milvus Lite when pymilvus is
installed, otherwise an in-memory stand-in, named in the table), batched with
JPEGs decoded by the CPU path (Pillow, SEARCHCORE_GPU_DECODE=off) and on the
device (models/gpu_decode.py, =on). Then the decode stage alone, to the 224 px
model inputs, on those JPEGs and on 12 MP ones: Pillow in the decode threads,
against the device decoder through the same pipeline and on its own. With
`--device cpu` the device decoder runs on the CPU (the same code). Run it
through bench/gpu_bench.sh on a GPU machine; `--device cpu --quick` checks the
script itself on any machine in a minute.

Usage: python -m bench.gpu_bench [--device cuda|cpu] [--quick] [--archs RN50,ViT-B-16] [--images 512] [--batch 64]
                                 [--large-images 24]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from PIL import Image

from bench._common import jpeg_split, machine, mean_jpeg_kb, quiet_logs, random_checkpoint, table, write_result
from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.indexing.pipeline import prepared_batches
from searchcore.models.encoder import Encoder, load_encoder
from searchcore.models.gpu_decode import DeviceDecoder
from searchcore.models.preprocess import preprocess
from searchcore.sources.datasets import open_source
from searchcore.sources.imaging import decode_image
from searchcore.stores.factory import open_stores
from searchcore.stores.vectors import LibraryMeta


class InMemoryVectors:
    """The VectorStore calls ingest makes, in numpy: used only where pymilvus is not installed."""

    backend = "in-memory stand-in"

    def __init__(self) -> None:
        self.rows: dict[int, np.ndarray] = {}
        self._meta: LibraryMeta | None = None

    def open_library(self, library: str, model: str, dim: int, *, create: bool) -> LibraryMeta:
        self._meta = self._meta or LibraryMeta(library, model, dim, "FLAT", {})
        return self._meta

    def meta(self, library: str) -> LibraryMeta | None:
        return self._meta

    def existing(self, library: str, ids: Sequence[int]) -> set[int]:
        return {i for i in ids if i in self.rows}

    def upsert(self, library: str, ids: Sequence[int], vectors: np.ndarray, attrs: object = None) -> None:
        self.rows.update(zip(ids, np.array(vectors, dtype=np.float32)))

    def flush(self, library: str) -> None:
        pass

    def count(self, library: str) -> int:
        return len(self.rows)

    def close(self) -> None:
        pass


def has_pymilvus() -> bool:
    return importlib.util.find_spec("pymilvus") is not None and importlib.util.find_spec("milvus_lite") is not None


def encoder_alone(encoder: Encoder, pixels: np.ndarray, batch: int) -> float:
    """Images/s of encode_pixel_batches over preprocessed pixels (after one warm-up batch)."""
    encoder.encode_pixels(pixels[:batch])
    start = time.perf_counter()
    batches = ((i, pixels[i:i + batch]) for i in range(0, len(pixels), batch))
    count = sum(len(v) for _, v in encoder.encode_pixel_batches(batches))
    return count / (time.perf_counter() - start)


def engine_ingest(encoder: Encoder, settings: Settings, root: Path, limit: int | None) -> tuple[float, int, str]:
    """Images/s of Engine.ingest from the tsv into SQLite + the vector store, flush included."""
    vectors: Any = None if has_pymilvus() else InMemoryVectors()
    engine = Engine(settings, open_stores(settings, vectors=vectors), encoder=encoder)
    split = root
    if limit is not None:  # batch 1 is slow: ingest a prefix of the split
        split = Path(settings.db_url).parent / "prefix"
        split.mkdir(exist_ok=True)
        with (root / "bench_imgs.tsv").open("rb") as src, (split / "bench_imgs.tsv").open("wb") as dst:
            for _, line in zip(range(limit), src):
                dst.write(line)
        shutil.copy(root / "bench_texts.jsonl", split / "bench_texts.jsonl")
    try:
        start = time.perf_counter()
        report = engine.ingest(split, split="bench")
        seconds = time.perf_counter() - start
        return report.added / seconds, report.added, engine.vectors.backend
    finally:
        engine.close()


def with_decoder(encoder: Encoder, on: bool) -> Encoder:
    """The same loaded model, with JPEGs decoded on its device (on) or by the CPU path."""
    decoder = DeviceDecoder(encoder.resolution, encoder.device) if on else None
    return Encoder(encoder.runtime_impl, encoder.spec, device=encoder.device, precision=encoder.precision,
                   backend=encoder.backend, device_decoder=decoder)


def run_arch(arch: str, args: argparse.Namespace, root: Path, work: Path) -> list[dict[str, Any]]:
    checkpoint = random_checkpoint(arch)
    rows: list[dict[str, Any]] = []
    base = Settings(model=str(checkpoint), model_dir=str(work / "models"), device=args.device, backend="torch",
                    precision="auto", library="bench", gpu_decode="off")
    encoder = load_encoder(base)
    records = [r for r in open_source(root, "bench").records if r.data is not None]
    pixels = np.stack([encoder.preprocess(decode_image(r.data).image) for r in records])  # type: ignore[arg-type]
    for batch, images, on_device in ((1, args.batch1_images, False), (args.batch, len(records), False),
                                     (args.batch, len(records), True)):
        alone = encoder_alone(encoder, pixels[:images], batch)
        folder = work / f"{arch}_{batch}_{on_device}"
        folder.mkdir()
        settings = base.replace(batch_size=batch, milvus_uri=str(folder / "milvus.db"), db_url=str(folder / "i.db"))
        decoding = with_decoder(encoder, on_device)
        e2e, added, backend = engine_ingest(decoding, settings, root, images if images < len(records) else None)
        rows.append({"arch": arch, "device": encoder.device, "precision": encoder.precision, "batch": batch,
                     "jpeg_decode": "device" if on_device else "cpu", "images": added,
                     "encoder_alone_images_per_s": alone, "end_to_end_images_per_s": e2e,
                     "of_encoder_alone": e2e / alone, "vector_store": backend,
                     "refused_by_device_decoder": decoding.device_decoder.refused if on_device else None})
    return rows


class Preprocessing:
    """What prepared_batches asks of an encoder to decode and preprocess, without a model."""

    resolution = 224

    def __init__(self, device_decoder: DeviceDecoder | None) -> None:
        self.device_decoder = device_decoder

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return preprocess(image, self.resolution)


def decode_alone(root: Path, device: str, batch: int, workers: int) -> dict[str, Any]:
    """Images/s of the decode stage alone, to model inputs: the CPU path (Pillow in the decode threads, and in
    one), the device decoder through the same pipeline (headers in the threads), and the device decoder on its
    own."""
    import torch

    records = [r for r in open_source(root, "bench").records if r.data is not None]
    jpegs = [r.data or b"" for r in records]
    decoder = DeviceDecoder(Preprocessing.resolution, device)
    decoder.model_inputs(jpegs[:2])  # warm: nvJPEG's handles, the resize kernels

    def rate(run: Any) -> float:
        started = time.perf_counter()
        count = run()
        if device == "cuda":
            torch.cuda.synchronize()
        return count / (time.perf_counter() - started)

    def through_pipeline(on_device: bool, threads: int = workers) -> int:
        stand_in = cast(Encoder, Preprocessing(decoder if on_device else None))
        return sum(len(prepared) for prepared, _ in prepared_batches(
            jpegs, lambda data: data, stand_in, on_bad=lambda *_: None, batch_size=batch, workers=threads,
            device_decode=on_device))

    def decoder_only() -> int:
        return sum(len(decoder.model_inputs(jpegs[i:i + batch])) for i in range(0, len(jpegs), batch))

    width, height = Image.open(io.BytesIO(jpegs[0])).size
    return {"pictures": f"{len(jpegs)} x {width}x{height}", "mean_jpeg_kb": mean_jpeg_kb(root), "device": device,
            "workers": workers, "cpu_path_images_per_s": rate(lambda: through_pipeline(False)),
            "cpu_path_1_thread_images_per_s": rate(lambda: through_pipeline(False, 1)),
            "device_pipeline_images_per_s": rate(lambda: through_pipeline(True)),
            "device_decoder_alone_images_per_s": rate(decoder_only), "refused": decoder.refused}


def environment() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                            "pymilvus": has_pymilvus()}
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="a few images, RN50 only: checks the script runs")
    parser.add_argument("--archs", default="RN50,ViT-B-16")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch1-images", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--large-images", type=int, default=24, help="12 MP JPEGs for the decode stage alone")
    parser.add_argument("--out", default="gpu_ingest", help="result name under bench/results")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.batch1_images, args.batch, args.archs, args.large_images = 16, 4, 8, "RN50", 2
    quiet_logs()
    env = environment()
    print(f"torch {env['torch']} (CUDA {env['cuda']}), GPU: {env['gpu']}, pymilvus: {env['pymilvus']}", flush=True)
    root = jpeg_split(args.images)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gpu_bench_") as tmp:
        for arch in [a for a in args.archs.split(",") if a]:
            started = time.perf_counter()
            rows += run_arch(arch, args, root, Path(tmp))
            print(f"{arch} done in {time.perf_counter() - started:.0f}s", flush=True)
    workers = os.cpu_count() or 2
    decode = [decode_alone(root, args.device, args.batch, workers)]
    if args.large_images:
        decode.append(decode_alone(jpeg_split(args.large_images, size=(4000, 3000)), args.device,
                                   min(args.batch, 16), workers))
    result = {"benchmark": "gpu_ingest", "images": args.images, "mean_jpeg_kb": mean_jpeg_kb(root),
              "environment": env, "rows": rows, "decode_alone": decode, "machine": machine()}
    print(table(("arch", "device", "precision", "batch", "JPEG decode", "images", "encoder alone img/s",
                 "end to end img/s", "of alone", "vector store"),
                [(r["arch"], r["device"], r["precision"], r["batch"], r["jpeg_decode"], r["images"],
                  r["encoder_alone_images_per_s"], r["end_to_end_images_per_s"], r["of_encoder_alone"],
                  r["vector_store"]) for r in rows]))
    print(f"\ndecode stage alone, to 224 px model inputs ({workers} decode threads; the device decoder on "
          f"{args.device}):")
    print(table(("pictures", "KB", "CPU path (Pillow) img/s", "its 1 thread img/s",
                 "device, through the pipeline img/s", "device decoder alone img/s", "refused"),
                [(d["pictures"], d["mean_jpeg_kb"], d["cpu_path_images_per_s"], d["cpu_path_1_thread_images_per_s"],
                  d["device_pipeline_images_per_s"], d["device_decoder_alone_images_per_s"], d["refused"])
                 for d in decode]))
    print(f"\nwrote {write_result(args.out, result)}")


if __name__ == "__main__":
    main()
