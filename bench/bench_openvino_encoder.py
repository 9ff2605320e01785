"""Benchmark Chinese-CLIP encoding on CPU: PyTorch (fp32, bf16 autocast) vs the OpenVINO backend.

Usage: python bench/bench_openvino_encoder.py [--arch RN50|ViT-B-16] [--images 256] [--batch 8]
Random weights (no model hub access); throughput does not depend on the weight values.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from searchcore.models.openvino.towers import OpenVINOTowers  # noqa: E402

ARCHS = {"RN50": ("RN50@RBT3-chinese", 224), "ViT-B-16": ("ViT-B-16@RoBERTa-wwm-ext-base-chinese", 224)}
QUERY = "一只在草地上奔跑的小狗"


def build_model(arch: str) -> Any:
    """Random-weight fp32 cn_clip CLIP for the architecture (create_model's prints are silenced)."""
    from cn_clip.clip.utils import create_model

    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        return create_model(ARCHS[arch][0]).float().eval()


def _split(pixels: np.ndarray, trials: int) -> list[np.ndarray]:
    """Split the images into `trials` equal slices (one timed trial each)."""
    size = max(1, len(pixels) // trials)
    return [pixels[i : i + size] for i in range(0, size * trials, size) if len(pixels[i : i + size])]


def _rates(rates: list[float]) -> dict[str, Any]:
    """Best (least disturbed by other processes) and median rate of the trials."""
    return {"images_per_s": max(rates), "images_per_s_median": statistics.median(rates), "trials": rates}


def images_per_s(run_batch: Callable[[np.ndarray], Any], pixels: np.ndarray, batch: int, trials: int) -> dict[str, Any]:
    """Warm images/s of calling run_batch on consecutive slices, over several timed trials."""
    for _ in range(2):
        run_batch(pixels[:batch])
    rates = []
    for part in _split(pixels, trials):
        start = time.perf_counter()
        for i in range(0, len(part), batch):
            run_batch(part[i : i + batch])
        rates.append(len(part) / (time.perf_counter() - start))
    return _rates(rates)


def ov_images_per_s(towers: OpenVINOTowers, pixels: np.ndarray, batch: int, trials: int) -> dict[str, Any]:
    """Warm images/s of the streaming AsyncInferQueue path, over several timed trials."""
    for _ in towers.encode_pixel_batches((i, pixels[:batch]) for i in range(2 * towers.jobs)):
        pass  # warm-up
    rates = []
    for part in _split(pixels, trials):
        start = time.perf_counter()
        stream = towers.encode_pixel_batches((i, part[i : i + batch]) for i in range(0, len(part), batch))
        count = sum(len(feats) for _, feats in stream)
        rates.append(count / (time.perf_counter() - start))
    return _rates(rates)


def p50_ms(fn: Callable[[], Any], runs: int, warmup: int = 5) -> float:
    """Median latency of fn in milliseconds."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    """Run the benchmark, print a table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="RN50")
    parser.add_argument("--images", type=int, default=256, help="preprocessed random images per throughput run")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--torch-fp32-images", type=int, default=48, help="images for the slow torch batch-1 run")
    parser.add_argument("--text-runs", type=int, default=50)
    parser.add_argument("--trials", type=int, default=4, help="timed trials per config; the table shows the best")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=os.cpu_count(),
        help="torch intra-op threads (1 is far faster than 2 when other processes contend the cores)",
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="IR cache (default: fresh temp dir)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "openvino_encoder.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    load_before = os.getloadavg()[0]
    torch.set_num_threads(args.torch_threads)

    from cn_clip.clip import tokenize

    model = build_model(args.arch)
    resolution = ARCHS[args.arch][1]
    pixels = np.random.default_rng(0).standard_normal((args.images, 3, resolution, resolution), dtype=np.float32)
    tokens = tokenize([QUERY], context_length=52)
    rows: list[dict[str, Any]] = []

    with torch.inference_mode():
        ips = images_per_s(
            lambda x: model.encode_image(torch.from_numpy(x)), pixels[: args.torch_fp32_images], 1, args.trials
        )
        rows.append({"engine": "torch", "precision": "fp32", "batch": 1, **ips})
        cl_model = build_model(args.arch).to(memory_format=torch.channels_last)

        def torch_bf16(x: np.ndarray, cl_model: Any = cl_model) -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return cl_model.encode_image(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))

        ips = images_per_s(torch_bf16, pixels, args.batch, args.trials)
        rows.append({"engine": "torch", "precision": "bf16 autocast+channels_last", "batch": args.batch, **ips})
        del cl_model, torch_bf16
        text_ms = p50_ms(lambda: model.encode_text(tokens), args.text_runs)
        rows.append({"engine": "torch", "precision": "fp32", "batch": 1, "text_p50_ms": text_ms})

    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache_dir or Path(tmp)
        for precision in ("fp32", "bf16"):
            key = f"bench-{args.arch}"
            start = time.perf_counter()
            towers = OpenVINOTowers(
                model, resolution=resolution, precision=precision, cache_dir=cache_dir, cache_key=key
            )
            first_s = time.perf_counter() - start
            start = time.perf_counter()
            towers = OpenVINOTowers(
                model, resolution=resolution, precision=precision, cache_dir=cache_dir, cache_key=key
            )
            cached_s = time.perf_counter() - start
            ips = ov_images_per_s(towers, pixels, args.batch, args.trials)
            text_ms = p50_ms(functools.partial(towers.encode_tokens, tokens.numpy()), args.text_runs)
            rows.append(
                {
                    "engine": "openvino",
                    "precision": precision,
                    "batch": args.batch,
                    **ips,
                    "text_p50_ms": text_ms,
                    "jobs": towers.jobs,
                    "init_first_s": first_s,
                    "init_cached_s": cached_s,
                }
            )
            del towers

    print(
        f"\n{args.arch} on {os.cpu_count()} CPU threads (torch: {args.torch_threads}), {args.images} images "
        f"@ {resolution}px, 1-min load before/after {load_before:.1f}/{os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'engine':<9} {'precision':<28} {'batch':>5} {'img/s best':>10} {'(median)':>9} {'text p50 ms':>12} "
        f"{'init s (1st/cached)':>20}"
    )
    for row in rows:
        img_s = f"{row['images_per_s']:.1f}" if "images_per_s" in row else "-"
        median = f"({row['images_per_s_median']:.1f})" if "images_per_s" in row else ""
        txt = f"{row['text_p50_ms']:.2f}" if "text_p50_ms" in row else "-"
        init = f"{row['init_first_s']:.1f}/{row['init_cached_s']:.2f}" if "init_first_s" in row else "-"
        print(
            f"{row['engine']:<9} {row['precision']:<28} {row['batch']:>5} {img_s:>10} {median:>9} {txt:>12} {init:>20}"
        )

    try:
        from bench._common import machine  # shared machine description (cpu model, AMX/bf16 flags, versions)

        host: dict[str, Any] = machine()
    except Exception:  # noqa: BLE001 - the measurement matters more than the description
        import openvino

        host = {
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "openvino": openvino.get_version(),
        }
    result: dict[str, Any] = {
        "arch": args.arch,
        "model": ARCHS[args.arch][0],
        "resolution": resolution,
        "images": args.images,
        "cpu_threads": os.cpu_count(),
        "torch_threads": args.torch_threads,
        "machine": host,
        "loadavg_1min_before_after": [load_before, os.getloadavg()[0]],  # >> cpu_threads means contended numbers
        "rows": rows,
    }
    out = args.out
    if out.exists() and out.suffix == ".json":
        try:
            existing = json.loads(out.read_text(encoding="utf-8"))
            runs = existing if isinstance(existing, dict) and "runs" in existing else {"runs": {}}
        except ValueError:
            runs = {"runs": {}}
    else:
        runs = {"runs": {}}
    runs["runs"][f"{args.arch}/torch_threads={args.torch_threads}"] = result
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(runs, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
