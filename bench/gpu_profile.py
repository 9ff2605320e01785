"""Where a GPU ingest spends its time, and fp16 fidelity on the device (run by bench/gpu_bench.sh --profile).

On the same ~94 KB 500x375 JPEGs as bench/gpu_bench.py, for ViT-B-16 (random weights) on CUDA:
- fp16 against fp32 image and text features: the lowest cosine;
- the stages before the encoder alone (tsv read + base64 + decode + preprocess through the ingest's own thread
  pool), in images/s, with Pillow and with JPEGs decoded on the device, against the encoder alone;
- a cProfile of `Engine.ingest` end to end (JPEGs decoded on the device: SEARCHCORE_GPU_DECODE=auto), top
  functions by own time.

Usage: python -m bench.gpu_profile [--images 2048] [--batch 64] [--arch ViT-B-16] [--device cuda|cpu] [--gpu-decode on]
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
from searchcore.models.encoder import Encoder, load_encoder
from searchcore.models.preprocess import STD
from searchcore.sources.datasets import open_source


def device_fidelity(encoder: Encoder, jpegs: list[bytes], pixels: np.ndarray) -> dict[str, float] | None:
    """Each picture the encoder's device decoder takes against Pillow's pixels: the embeddings' cosine, and
    the largest difference in 8-bit levels of the resized picture. None without a device decoder."""
    decoder = encoder.device_decoder
    if decoder is None:
        return None
    inputs = decoder.model_inputs(jpegs)
    kept = [i for i, row in enumerate(inputs) if row is not None]
    on_device = decoder.stack([inputs[i] for i in kept])
    cosines = np.sum(encoder.encode_pixels(pixels[kept]) * encoder.encode_pixels(on_device), axis=1)
    levels = np.abs(on_device.cpu().numpy() - pixels[kept]) * STD * 255
    return {"taken": len(kept), "cosine_min": float(cosines.min()), "cosine_mean": float(cosines.mean()),
            "max_levels": float(levels.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--arch", default="ViT-B-16")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--gpu-decode", default="auto", choices=("auto", "on", "off"),
                        help="JPEGs decoded on the device (auto: on CUDA; on: also on a CPU, to check this script)")
    args = parser.parse_args()
    quiet_logs()
    env = environment()
    root = jpeg_split(args.images)
    checkpoint = random_checkpoint(args.arch)
    with tempfile.TemporaryDirectory(prefix="gpu_profile_") as tmp:
        base = Settings(model=str(checkpoint), model_dir=str(Path(tmp) / "models"), device=args.device, backend="torch",
                        library="bench", batch_size=args.batch, gpu_decode=args.gpu_decode)
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
        device_decode = device_fidelity(fp32, [r.data or b"" for r in records], pixels)
        if device_decode:
            print(f"JPEGs decoded on the device against Pillow (fp32, {device_decode['taken']} of {len(records)} "
                  f"taken): cosine min {device_decode['cosine_min']:.6f} mean {device_decode['cosine_mean']:.6f}; "
                  f"largest difference {device_decode['max_levels']:.1f} levels of 255", flush=True)

        fp16.encode_pixels(pixels[:args.batch])  # warm
        started = time.perf_counter()
        for start in range(0, len(pixels), args.batch):
            fp16.encode_pixels(pixels[start:start + args.batch])
        alone = len(pixels) / (time.perf_counter() - started)

        def stages(device_decode: bool) -> float:
            """Images/s of the stages before the encoder: read, decode, preprocess (JPEGs on the device, or not)."""
            source = open_source(root, "bench")
            started = time.perf_counter()
            count = 0
            for batch, _ in prepared_batches(source.records, lambda r: r.data or b"", fp16, on_bad=lambda *_: None,
                                             batch_size=args.batch, device_decode=device_decode):
                count += len(batch)
            return count / (time.perf_counter() - started)

        cpu_stages = stages(False)
        device_stages = stages(True) if fp16.device_decoder is not None else None
        print(f"encoder alone {alone:.0f} img/s; stages before the encoder alone (read, decode, preprocess): "
              f"{cpu_stages:.0f} img/s with Pillow, "
              f"{f'{device_stages:.0f}' if device_stages else 'no device decoder:'} img/s with JPEGs decoded on "
              f"the device", flush=True)

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
    fidelity = {"image_min": float(image_cos.min()), "text_min": float(text_cos.min()),
                "device_decode_vs_pillow": device_decode}
    write_result("gpu_profile", {"benchmark": "gpu_profile", "environment": env, "images": args.images,
                                 "fp16_vs_fp32": fidelity,
                                 "encoder_alone": alone, "cpu_stages": cpu_stages,
                                 "stages_with_device_decode": device_stages, "end_to_end": e2e,
                                 "jpeg_decode": "device" if fp16.device_decoder is not None else "cpu",
                                 "profile_top": text.getvalue()[:6000]})


if __name__ == "__main__":
    main()
