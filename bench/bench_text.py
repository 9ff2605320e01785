"""Finding pictures by their text: OCR speed, ingest with and without --ocr, and query latency by mode.

1. A folder of 500x375 pictures, half with Chinese words drawn in Noto Sans CJK and half of shapes, ingested
   with RN50 (random weights) on the default CPU backend, without and with --ocr (fresh stores each), and
   OCR alone on the same pictures.
2. At 31,783 images (synthetic 1024-d vectors, as bench/bench_query.py makes them, each with a Chinese
   caption of 3-6 words), the p50/p95 of `Engine.search_text` in semantic, keyword and hybrid mode, end to
   end (the text encoder included, image bytes not read), on Milvus Lite with the exact copy ready.

Usage: python -m bench.bench_text [--pictures 60] [--vectors 31783] [--queries 40]   (--pictures 0: latency only)
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from bench._common import machine, percentiles, quiet_logs, random_checkpoint, table, write_result
from bench.bench_query import synthetic_vectors
from demo.shapes import CLASSES, draw
from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.models.encoder import load_encoder
from searchcore.stores.images import StoredImage

FONT = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
WORDS = ["北京", "上海", "烤鸭", "拉面", "会议", "下午", "三点", "天气", "小猫", "小狗", "海边", "日落", "生日",
         "蛋糕", "特价", "欢迎", "光临", "地铁", "出口", "咖啡", "菜单", "牛肉", "米饭", "火锅", "周末", "旅行",
         "雪山", "城市", "夜景", "朋友", "学校", "图书馆", "医院", "超市", "打折", "新年", "快乐", "花园"]
LIBRARY = "bench_text"


def phrase(rng: random.Random) -> str:
    return "".join(rng.sample(WORDS, rng.randint(3, 6)))


def pictures(folder: Path, count: int) -> Path:
    rng = random.Random(0)
    font = ImageFont.truetype(FONT, 36)
    for i in range(count):
        if i % 2 == 0:
            image = Image.new("RGB", (500, 375), tuple(rng.randint(200, 255) for _ in range(3)))
            pen = ImageDraw.Draw(image)
            for line in range(rng.randint(1, 3)):
                pen.text((25, 40 + 90 * line), phrase(rng)[:12], fill=(20, 20, 20), font=font)
        else:
            image = draw(*CLASSES[i % len(CLASSES)], rng, (500, 375))
        image.save(folder / f"{i:04d}.jpg", quality=90)
    return folder


def ingest_rates(settings: Settings, folder: Path, work: Path) -> dict[str, float]:
    encoder = load_encoder(settings)
    rates: dict[str, float] = {}
    for name, ocr in (("without --ocr", False), ("with --ocr", True)):
        run = work / name.replace(" ", "_")
        run.mkdir()
        engine = Engine(settings.replace(milvus_uri=str(run / "m.db"), db_url=str(run / "i.db")), encoder=encoder)
        try:
            if ocr:
                engine.ocr_reader()  # loaded (compiled, cached) before the clock starts, as encoder is
            started = time.perf_counter()
            report = engine.ingest(folder, ocr=ocr)
            rates[name] = report.added / (time.perf_counter() - started)
            if ocr:
                shots = [Image.open(p).convert("RGB") for p in sorted(folder.glob("*.jpg"))]
                started = time.perf_counter()
                read = engine.ocr_reader().read_many(shots)
                rates["OCR alone"] = len(shots) / (time.perf_counter() - started)
                rates["pictures with words read"] = sum(bool(r.text) for r in read)
        finally:
            engine.close()
    return rates


def query_latency(settings: Settings, vectors: int, queries: int, work: Path) -> dict[str, dict[str, float]]:
    encoder = load_encoder(settings)
    engine = Engine(settings.replace(milvus_uri=str(work / "q.db"), db_url=str(work / "q.sqlite")), encoder=encoder)
    rng = random.Random(1)
    try:
        matrix = synthetic_vectors(vectors, encoder.dim)
        engine.vectors.open_library(LIBRARY, encoder.name, encoder.dim, create=True)
        assert engine.texts is not None
        for start in range(0, vectors, 2000):
            ids = list(range(start + 1, min(start + 2000, vectors) + 1))
            captions = [phrase(rng) for _ in ids]
            engine.images.put_many(LIBRARY, [StoredImage(i, b"x", "JPEG", 500, 375, f"{i:064x}", "", [c])
                                             for i, c in zip(ids, captions)])
            engine.vectors.upsert(LIBRARY, ids, matrix[start:start + len(ids)], [("", 0)] * len(ids))
            engine.texts.upsert(LIBRARY, ids, captions, [("", 0)] * len(ids))
        engine.vectors.flush(LIBRARY)
        engine.texts.flush(LIBRARY)
        engine.vectors.wait_for_copy(LIBRARY)  # type: ignore[attr-defined]
        if hasattr(engine.texts, "wait_for_copy"):  # the keyword index's copy (absent before it was built)
            engine.texts.wait_for_copy(LIBRARY)
        texts = [phrase(rng)[:4] for _ in range(queries)]
        out: dict[str, dict[str, float]] = {}
        samples = []
        for text in texts:  # the text tower alone, which every mode runs once per query
            started = time.perf_counter()
            encoder.encode_texts([text])
            samples.append((time.perf_counter() - started) * 1000)
        out["text encode alone"] = percentiles(samples)
        for mode in ("semantic", "keyword", "hybrid"):
            for text in texts[:3]:
                engine.search_text(text, 10, LIBRARY, mode=mode)
            samples = []
            for text in texts:
                started = time.perf_counter()
                engine.search_text(text, 10, LIBRARY, mode=mode)
                samples.append((time.perf_counter() - started) * 1000)
            out[mode] = percentiles(samples)
        return out
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", type=int, default=60)
    parser.add_argument("--vectors", type=int, default=31_783)
    parser.add_argument("--queries", type=int, default=40)
    args = parser.parse_args()
    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="bench_text_") as tmp:
        work = Path(tmp)
        settings = Settings(model=str(random_checkpoint("RN50")), library=LIBRARY)
        folder = work / "pictures"
        folder.mkdir()
        rates = ingest_rates(settings, pictures(folder, args.pictures), work) if args.pictures else {}
        print(table(("what", "pictures/s"), [(k, v) for k, v in rates.items()]), flush=True)
        latency = query_latency(settings, args.vectors, args.queries, work)
        print(table(("mode", "p50 ms", "p95 ms"), [(m, v["p50_ms"], v["p95_ms"]) for m, v in latency.items()]))
    result = {"pictures": args.pictures, "vectors": args.vectors, "ingest": rates, "latency_ms": latency,
              "machine": machine()}
    print(f"\nwrote {write_result('text_search', result)}")


if __name__ == "__main__":
    main()
