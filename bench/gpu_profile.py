"""Where a GPU ingest spends its time, and fp16 fidelity on the device (run by bench/gpu_bench.sh --profile).

On the same ~94 KB 500x375 JPEGs as bench/gpu_bench.py, for ViT-B-16 (random weights) on CUDA:
- fp16 against fp32 image and text features: the lowest cosine;
- the CPU stages alone (tsv read + base64 + decode + preprocess through the ingest's own thread pool), in
  images/s, against the encoder alone;
- a cProfile of `Engine.ingest` end to end, top functions by own time.

Usage: python -m bench.gpu_profile [--images 2048] [--batch 64]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._common import jpeg_split, quiet_logs, random_checkpoint, write_result
from bench.gpu_bench import engine_ingest, environment
from searchcore.config import Settings
from searchcore.indexing.pipeline import prepared_batches
from searchcore.models.encoder import load_encoder
from searchcore.sources.datasets import open_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--arch", default="ViT-B-16")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    quiet_logs()
    env = environment()
    root = jpeg_split(args.images)
    checkpoint = random_checkpoint(args.arch)
    with tempfile.TemporaryDirectory(prefix="gpu_profile_") as tmp:
        base = Settings(model=str(checkpoint), model_dir=str(Path(tmp) / "models"), device=args.device, backend="torch",
                        library="bench", batch_size=args.batch)
        fp16 = load_encoder(base.replace(precision="fp16" if args.device == "cuda" else "bf16"))
        fp32 = load_encoder(base.replace(precision="fp32"))
        records = [r for r in open_source(root, "bench").records][:256]
        from searchcore.sources.imaging import decode_image

        pixels = np.stack([fp16.preprocess(decode_image(r.data or b"").image) for r in records])
        texts = ["一只在草地上奔跑的狗", "海边的日落", "红色的圆形", "城市夜景", "生日蛋糕"] * 8
        image_cos = np.sum(fp16.encode_pixels(pixels) * fp32.encode_pixels(pixels), axis=1)
        text_cos = np.sum(fp16.encode_texts(texts) * fp32.encode_texts(texts), axis=1)
        print(f"fp16 vs fp32 cosine: images min {image_cos.min():.6f} mean {image_cos.mean():.6f}; "
              f"texts min {text_cos.min():.6f}", flush=True)

        fp16.encode_pixels(pixels[:args.batch])  # warm
        started = time.perf_counter()
        for start in range(0, len(pixels), args.batch):
            fp16.encode_pixels(pixels[start:start + args.batch])
        alone = len(pixels) / (time.perf_counter() - started)

        source = open_source(root, "bench")
        started = time.perf_counter()
        count = 0
        for batch, _ in prepared_batches(source.records, lambda r: r.data or b"", fp16, on_bad=lambda *_: None,
                                         batch_size=args.batch):
            count += len(batch)
        cpu_stages = count / (time.perf_counter() - started)
        print(f"encoder alone {alone:.0f} img/s; CPU stages alone (read, decode, preprocess) {cpu_stages:.0f} img/s",
              flush=True)

        profile = cProfile.Profile()
        folder = Path(tmp) / "e2e"
        folder.mkdir()
        settings = base.replace(precision=fp16.precision, milvus_uri=str(folder / "milvus.db"),
                                db_url=str(folder / "i.db"))
        profile.enable()
        e2e, added, backend = engine_ingest(fp16, settings, root, None)
        profile.disable()
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(25)
        print(f"end to end {e2e:.0f} img/s ({added} images, {backend}); profile by own time:", flush=True)
        print(text.getvalue()[:6000], flush=True)
    fidelity = {"image_min": float(image_cos.min()), "text_min": float(text_cos.min())}
    write_result("gpu_profile", {"benchmark": "gpu_profile", "environment": env, "images": args.images,
                                 "fp16_vs_fp32": fidelity,
                                 "encoder_alone": alone, "cpu_stages": cpu_stages, "end_to_end": e2e,
                                 "profile_top": text.getvalue()[:6000]})


if __name__ == "__main__":
    main()
