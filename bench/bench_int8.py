"""int8 image tower (NNCF post-training quantization) vs fp32 and bf16 OpenVINO: images/s and cosine to fp32.

RN50 architecture with random weights (the speed does not depend on the values; recall would be
meaningless, so fidelity is reported as per-image cosine to fp32 only). The first `--calibration`
~94 KB 500x375 JPEGs calibrate int8; the rest are held out for throughput and fidelity.

Usage: python -m bench.bench_int8 [--arch RN50|ViT-B-16] [--images 384] [--calibration 128] [--batch 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import jpeg_split, machine, quiet_logs, table, write_result
from bench.bench_openvino_encoder import ARCHS, _rates, _split, build_model
from searchcore.models.openvino.compiled import ov  # openvino after the telemetry opt-out
from searchcore.models.openvino.int8 import CALIBRATION_SIZE, cached_int8_model, calibration_sample
from searchcore.models.openvino.towers import OpenVINOTowers
from searchcore.models.preprocess import preprocess
from searchcore.sources.datasets import open_source
from searchcore.sources.imaging import decode_image


def jpeg_pixels(images: int, resolution: int) -> np.ndarray:
    """The bench split's JPEGs decoded and preprocessed: float32 [images,3,R,R]."""
    records = [r for r in open_source(jpeg_split(images), "bench").records if r.data is not None]
    return np.stack([preprocess(decode_image(r.data).image, resolution) for r in records])  # type: ignore[arg-type]


def compile_image(core: ov.Core, model: ov.Model, precision: Any) -> ov.CompiledModel:
    """Compile as OpenVINOTowers does for the image tower: throughput hint, given inference precision."""
    return core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": precision})


def features(compiled: ov.CompiledModel, pixels: np.ndarray, batch: int) -> np.ndarray:
    """Unnormalised features of all pixels, batch by batch, through an AsyncInferQueue (results in order)."""
    jobs = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    queue = ov.AsyncInferQueue(compiled, jobs)
    out: dict[int, np.ndarray] = {}
    queue.set_callback(lambda request, i: out.__setitem__(i, request.get_output_tensor(0).data.copy()))
    for i in range(0, len(pixels), batch):
        queue.start_async({0: pixels[i : i + batch]}, i)
    queue.wait_all()
    return np.concatenate([out[i] for i in sorted(out)])


def images_per_s(compiled: ov.CompiledModel, pixels: np.ndarray, batch: int, trials: int) -> dict[str, Any]:
    """Warm images/s over several timed trials (best and median)."""
    features(compiled, pixels[: 4 * batch], batch)
    rates = []
    for part in _split(pixels, trials):
        start = time.perf_counter()
        features(compiled, part, batch)
        rates.append(len(part) / (time.perf_counter() - start))
    return _rates(rates)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity."""
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main() -> None:
    """Convert, quantize, measure; print a table and write bench/results/int8_{arch}.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="RN50")
    parser.add_argument("--images", type=int, default=384, help="JPEGs in all: calibration + held out")
    parser.add_argument("--calibration", type=int, default=CALIBRATION_SIZE)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    quiet_logs()
    host = machine()
    resolution = ARCHS[args.arch][1]
    pixels = jpeg_pixels(args.images, resolution)
    calibration = calibration_sample([pixels], args.calibration)
    held_out = pixels[len(calibration) :]
    core = ov.Core()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        towers = OpenVINOTowers(build_model(args.arch), resolution=resolution, precision="fp32", cache_dir=Path(tmp),
                                cache_key=f"bench-{args.arch}")
        xml = towers.entry_dir / "image.xml"
        del towers
        fp32 = core.read_model(xml)
        start = time.perf_counter()
        int8 = cached_int8_model(core, xml, calibration, Path(tmp) / "int8", [args.arch])
        quantize_s = time.perf_counter() - start
        start = time.perf_counter()
        cached_int8_model(core, xml, calibration, Path(tmp) / "int8", [args.arch])
        cached_s = time.perf_counter() - start
        reference = features(compile_image(core, fp32, ov.Type.f32), held_out, args.batch)
        configs = (("fp32", fp32, ov.Type.f32), ("bf16", fp32, ov.Type.bf16),
                   ("int8 (f32 hint)", int8, ov.Type.f32), ("int8 (bf16 hint)", int8, ov.Type.bf16))
        for name, model, precision in configs:
            compiled = compile_image(core, model, precision)
            cos = cosine(features(compiled, held_out, args.batch), reference)
            rows.append({"precision": name, **images_per_s(compiled, held_out, args.batch, args.trials),
                         "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean())})
            del compiled
    base = rows[0]["images_per_s"]
    print(f"\n{args.arch} (random weights), {len(held_out)} held-out {resolution}px images from 500x375 JPEGs, "
          f"batch {args.batch}, calibration {len(calibration)}; int8 build {quantize_s:.1f}s, cached load "
          f"{cached_s:.2f}s; load avg {host['load_avg_1m_start']:.1f} at start")
    print(table(["precision", "img/s best", "(median)", "x fp32", "cos min", "cos mean"],
                [[r["precision"], r["images_per_s"], r["images_per_s_median"], r["images_per_s"] / base,
                  f"{r['cosine_min']:.5f}", f"{r['cosine_mean']:.5f}"] for r in rows]))
    path = write_result(f"int8_{args.arch}", {
        "arch": args.arch, "model": ARCHS[args.arch][0], "resolution": resolution, "held_out": len(held_out),
        "calibration": len(calibration), "batch": args.batch, "int8_build_s": quantize_s,
        "int8_cached_load_s": cached_s, "machine": host, "rows": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
