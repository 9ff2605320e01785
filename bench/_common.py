"""What every benchmark shares: the machine's description, random-weight checkpoints, data, tables, JSON.

Generated data and checkpoints live in a cache folder outside git
($SEARCHCORE_BENCH_CACHE, default ~/.cache/searchcore-bench), so a re-run
on a quiet machine skips the set-up and measures the same inputs.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import io
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/x.py` as well as `python -m bench.x`
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
ARCHS = {"RN50": "RN50@RBT3-chinese", "ViT-B-16": "ViT-B-16@RoBERTa-wwm-ext-base-chinese"}
QUERIES = ["一只在草地上奔跑的小狗", "红色的圆形", "夕阳下的海滩和椰子树", "北京的天安门广场", "一碗热腾腾的牛肉面",
           "雪山下的湖泊", "穿着校服的学生在操场上", "蓝色的正方形", "城市夜景中的高楼大厦", "桌上的一杯咖啡"]


def cache_dir() -> Path:
    """The benchmark cache folder (created on demand)."""
    path = Path(os.environ.get("SEARCHCORE_BENCH_CACHE", "~/.cache/searchcore-bench")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def machine() -> dict[str, Any]:
    """CPU, cores, ISA extensions that matter for bf16, library versions, and the load when asked."""
    flags = ""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        info = Path("/proc/cpuinfo").read_text()
        model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), model)
        flags = next((ln for ln in info.splitlines() if ln.startswith("flags")), "")
    versions = {}
    for name in ("torch", "openvino", "pymilvus", "milvus_lite", "faiss", "numpy"):
        with contextlib.suppress(Exception):
            mod = __import__(name)
            versions[name] = getattr(mod, "__version__", None) or mod.get_version()
    return {"cpu": model, "cores": os.cpu_count(), "avx512_bf16": "avx512_bf16" in flags, "amx": "amx_bf16" in flags,
            "python": platform.python_version(), "versions": versions, "load_avg_1m_start": os.getloadavg()[0],
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def random_checkpoint(arch: str = "RN50") -> Path:
    """A self-describing cn_clip checkpoint with random weights: {"state_dict", "model_config"}, fp32."""
    path = cache_dir() / f"random_{arch}.pt"
    if path.is_file():
        return path
    import torch
    from cn_clip.clip.utils import create_model

    vision, text = ARCHS[arch].split("@")
    configs = Path(__import__("cn_clip").__file__).parent / "clip" / "model_configs"
    config = json.loads((configs / f"{vision}.json").read_text())
    config.update(json.loads((configs / f"{text}.json").read_text()))
    if isinstance(config["vision_layers"], str):
        config["vision_layers"] = json.loads(config["vision_layers"])
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        model = create_model(ARCHS[arch]).float()
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": model.state_dict(), "model_config": config}, tmp)
    tmp.replace(path)
    return path


def jpeg_split(images: int, size: tuple[int, int] = (500, 375), quality: int = 90, seed: int = 0) -> Path:
    """A Chinese-CLIP dataset folder with one split, "bench": JPEGs of coloured shapes in bench_imgs.tsv."""
    import numpy as np
    from PIL import Image

    from demo.shapes import CLASSES, caption, draw

    root = cache_dir() / f"tsv_{images}_{size[0]}x{size[1]}_q{quality}_s{seed}"
    if (root / "bench_texts.jsonl").is_file():
        return root
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    grain = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    with (root / "bench_imgs.tsv").open("w", encoding="ascii") as tsv:
        for i in range(images):
            pixels = np.asarray(draw(*CLASSES[i % len(CLASSES)], rng, size), dtype=np.float32)
            # Film-like grain, so each JPEG is ~94 KB and costs what a 500x375 photo costs to decode.
            pixels += grain.normal(0, 18, pixels.shape[:2] + (1,)) + grain.normal(0, 9, pixels.shape)
            buffer = io.BytesIO()
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
            tsv.write(f"{i + 1}\t{base64.b64encode(buffer.getvalue()).decode('ascii')}\n")
            by_class.setdefault(i % len(CLASSES), []).append(i + 1)
    with (root / "bench_texts.jsonl").open("w", encoding="utf-8") as texts:
        for c, ids in by_class.items():
            texts.write(json.dumps({"text_id": c + 1, "text": caption(*CLASSES[c]), "image_ids": ids},
                                   ensure_ascii=False) + "\n")
    return root


def mean_jpeg_kb(root: Path, split: str = "bench") -> float:
    """Mean size of the split's images in KB."""
    sizes = [len(line.split(b"\t", 1)[1].strip()) * 3 / 4 for line in (root / f"{split}_imgs.tsv").open("rb")]
    return statistics.fmean(sizes) / 1000


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50 and p95 of latencies in milliseconds."""
    ordered = sorted(samples_ms)
    return {"p50_ms": statistics.median(ordered),
            "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]}


def time_ms(fn: Callable[[], Any], runs: int, warmup: int = 3) -> list[float]:
    """Latency samples of fn in milliseconds."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text (and Markdown-compatible) table."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.rjust(w) if isinstance(v, (int, float)) else c.ljust(w)
                                for c, v, w in zip(cells[n], row, widths)) + " |" for n, row in enumerate(rows)]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1 else f"{value:.1f}"
    return str(value)


def write_result(name: str, data: dict[str, Any]) -> Path:
    """Write bench/results/{name}.json with the machine's description and the load at the end."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data.setdefault("machine", machine())
    data["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def quiet_logs() -> None:
    """Keep library chatter (pymilvus iterator warnings, OpenVINO info) out of the tables."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("pymilvus", "milvus_lite", "searchcore"):
        logging.getLogger(name).setLevel(logging.ERROR)
