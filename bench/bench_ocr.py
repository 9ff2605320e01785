"""OCR (issue 13): images/s and exact-text recall of searchcore.models.ocr against the stock RapidOCR pipeline.

500x375 JPEGs, half of them a photo-like picture with a Chinese sign (Noto Sans/Serif CJK, 16 to 48 px, one
to three lines), half the same kind of picture with no text. Stock is `rapidocr_onnxruntime.RapidOCR()`
with its defaults (onnxruntime on every core, angle classifier on); it reads one picture at a time, as it
can. searchcore is timed with read_many at each thread budget and precision. Recall counts pictures whose
text comes back exactly (lines joined by newlines); "false text" counts pictures without text that gave some.
core-ms/img is the process's CPU time per picture (all threads): less sensitive to other work on a shared
machine than img/s, though onnxruntime's spinning worker threads count in it too.

Needs the Debian package fonts-noto-cjk. Usage: python -m bench.bench_ocr [--images 60] [--trials 3]
"""

from __future__ import annotations

import argparse
import io
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bench._common import machine, quiet_logs, table, write_result
from demo.shapes import CLASSES, draw
from searchcore.models.ocr import OcrReader

FONTS = Path("/usr/share/fonts/opentype/noto")
FACES = ("NotoSansCJK-Regular.ttc", "NotoSansCJK-Bold.ttc", "NotoSerifCJK-Regular.ttc")
PHRASES = ("欢迎光临北京烤鸭店", "今日特价全场八折", "营业时间早上九点到晚上十点", "小心地滑", "禁止吸烟",
           "新鲜水果每斤五元", "明天一起吃饭吗", "好的中午十二点见", "上海市人民公园", "请排队等候", "热烈庆祝开业大吉",
           "手机充值", "牛肉面馆", "第一人民医院", "清仓大甩卖", "会议室在三楼", "生日快乐", "学而时习之")
SIZE = (500, 375)


def picture(index: int) -> tuple[Image.Image, str]:
    """Picture `index` as a decoded q90 JPEG and the text on it: odd indexes carry a sign, even ones none."""
    rng = random.Random(index)
    image = draw(*CLASSES[index % len(CLASSES)], rng, SIZE)
    pixels = np.asarray(image, dtype=np.float32) + np.random.default_rng(index).normal(0, 6, (SIZE[1], SIZE[0], 1))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    lines: list[str] = []
    if index % 2:
        canvas = ImageDraw.Draw(image)
        size = rng.choice((16, 20, 24, 32, 40, 48))
        font = ImageFont.truetype(str(FONTS / rng.choice(FACES)), size)
        fitting = [phrase for phrase in PHRASES if canvas.textlength(phrase, font=font) < SIZE[0] - 40]
        lines = rng.sample(fitting, rng.choice((1, 1, 2, 3)))
        width = max(canvas.textlength(line, font=font) for line in lines)
        left = rng.uniform(15, SIZE[0] - width - 15)
        top = rng.uniform(10, SIZE[1] - 2 * size * len(lines) - 10)
        dark = rng.random() < 0.5
        canvas.rectangle((left - 10, top - 8, left + width + 10, top + 2 * size * len(lines)),
                         fill=(30, 60, 140) if dark else (255, 250, 235))
        for row, line in enumerate(lines):
            canvas.text((left, top + 2 * size * row), line, font=font, fill=(255, 255, 255) if dark else (20, 20, 20))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), "\n".join(lines)


def stock_text(engine: Any, image: Image.Image) -> str:
    """What stock RapidOCR reads, as searchcore reports it: kept lines joined by newlines."""
    found, _ = engine(image)
    return "\n".join(line[1].strip() for line in found or [])


def measure(read_all: Any, images: list[Image.Image], truths: list[str], trials: int) -> dict[str, Any]:
    """Best and median images/s of read_all over the pictures, and what its first pass read."""
    read_all(images[:2])  # first inference of each shape allocates
    rates, core_ms, texts = [], [], []
    for _ in range(trials):
        start, cpu = time.perf_counter(), time.process_time()
        texts = read_all(images)
        rates.append(len(images) / (time.perf_counter() - start))
        core_ms.append(1000 * (time.process_time() - cpu) / len(images))
    with_text = [i for i, truth in enumerate(truths) if truth]
    return {"images_per_s": max(rates), "images_per_s_median": float(np.median(rates)), "core_ms": min(core_ms),
            "recall": sum(texts[i] == truths[i] for i in with_text), "with_text": len(with_text),
            "false_text": sum(bool(texts[i]) for i, truth in enumerate(truths) if not truth),
            "misread": [(truths[i], texts[i]) for i in with_text if texts[i] != truths[i]]}


def main() -> None:
    """Read the pictures with stock RapidOCR and each searchcore setting; print a table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    if not (FONTS / FACES[0]).is_file():
        raise SystemExit(f"{FONTS / FACES[0]} is missing: apt-get install fonts-noto-cjk")
    quiet_logs()
    from rapidocr_onnxruntime import RapidOCR

    host = machine()
    images, truths = map(list, zip(*(picture(i) for i in range(args.images))))
    stock = RapidOCR()
    rows = [{"pipeline": "stock RapidOCR()", "precision": "fp32", "threads": "all",
             **measure(lambda batch: [stock_text(stock, image) for image in batch], images, truths, args.trials)}]
    with tempfile.TemporaryDirectory() as cache:
        for precision in ("fp32", "auto"):
            for threads in (1, 2):
                start = time.perf_counter()
                reader = OcrReader(cache_dir=Path(cache), threads=threads, precision=precision)
                load_s = time.perf_counter() - start
                read_all = lambda batch, reader=reader: [found.text for found in reader.read_many(batch)]  # noqa: E731
                rows.append({"pipeline": f"searchcore ({precision})", "precision": reader.precision,
                             "threads": threads, "load_s": load_s, **measure(read_all, images, truths, args.trials)})
    base = rows[0]["images_per_s"]
    print(f"\nOCR of {args.images} 500x375 JPEGs ({rows[0]['with_text']} with text), best of {args.trials}; "
          f"{host['cpu']}, {host['cores']} cores, AMX {host['amx']}; load avg {host['load_avg_1m_start']:.1f} at start")
    print(table(["pipeline", "runs in", "threads", "img/s best", "(median)", "x stock", "core-ms/img", "recall",
                 "false text", "load s"],
                [[r["pipeline"], r["precision"], r["threads"], r["images_per_s"], r["images_per_s_median"],
                  r["images_per_s"] / base, r["core_ms"], f"{r['recall']}/{r['with_text']}", r["false_text"],
                  r.get("load_s")] for r in rows]))
    for row in rows:
        for truth, text in row["misread"]:
            print(f"{row['pipeline']}, {row['threads']} thread(s): {truth!r} read as {text!r}")
    path = write_result("ocr", {"images": args.images, "size": SIZE, "trials": args.trials, "machine": host,
                                "rows": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
