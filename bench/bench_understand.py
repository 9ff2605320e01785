"""What reading a query and folding bursts add to a text query at 31,783 pictures (issue 29's goal: <= 5 ms p50).

The library: 31,783 synthetic normalised vectors of RN50's dimension (bench_query's low-rank kind), each with a
caption and a date over two years in SQLite, and every tenth picture with four near-identical copies beside it
(cosine >= 0.97), so the fold has bursts to find. Measured, from one run, on the same queries:
- `understand` alone (Engine.understand: the reading and the library's has-dates check), on queries with and
  without time words;
- the fold alone (search.fold, given the hits' metadata, which the page reads anyway) on the hit lists a
  search hands it (its top 100, and the gallery's 1,000), in blocks as it runs and, as the baseline, all pairs
  in one product (the fold before blocks), one after the other in one process;
- search_text end to end, semantic mode, the query as typed (literal, no fold) against the query read and folded
  (collapse), at top-k 96 (the gallery's default) and 1,000.

Usage: python -m bench.bench_understand [--vectors 31783] [--queries 40]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from bench._common import machine, percentiles, quiet_logs, random_checkpoint, table, write_result
from bench.bench_query import synthetic_vectors
from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.models.encoder import load_encoder
from searchcore.records import naive_seconds
from searchcore.search import fold, fold_rows
from searchcore.stores.images import StoredImage

LIBRARY = "bench"
WORDS = ["海边", "日落", "雪山", "城市", "夜景", "小狗", "花园", "生日", "蛋糕", "街道", "咖啡", "湖泊"]
TIMES = ["去年夏天", "上个月", "最近三天", "2025年国庆", "前年春节", "本周", ""]


def library(engine: Engine, count: int, dim: int, model: str) -> None:
    """count pictures: vectors, captions and dates over two years; every tenth with four near copies after it."""
    rng = np.random.default_rng(7)
    base = synthetic_vectors(count, dim)
    for start in range(0, count, 10):  # a burst: the next four are the first plus a little noise
        for k in range(1, 5):
            if start + k < count:
                near = base[start] + 0.2 * rng.standard_normal(dim).astype(np.float32) / np.sqrt(dim)
                base[start + k] = near / np.linalg.norm(near)
    words = random.Random(3)
    first = dt.datetime(2024, 3, 1, 12)
    engine.vectors.open_library(LIBRARY, model, dim, create=True)
    for start in range(0, count, 2000):
        ids = list(range(start + 1, min(start + 2000, count) + 1))
        taken = [naive_seconds(first + dt.timedelta(hours=13 * i)) for i in ids]  # 31,783 x 13 h: about 47 months
        captions = ["".join(words.sample(WORDS, 2)) for _ in ids]
        engine.images.put_many(LIBRARY, [StoredImage(i, b"x", "JPEG", 500, 375, f"{i:064x}", "", [c], f"{i}.jpg", t)
                                         for i, c, t in zip(ids, captions, taken)])
        engine.vectors.upsert(LIBRARY, ids, base[start:start + len(ids)], [(f"{i}.jpg", t) for i, t in zip(ids, taken)])
    engine.vectors.flush(LIBRARY)
    engine.vectors.wait_for_copy(LIBRARY)  # type: ignore[attr-defined]


def samples(fn: Any, items: list[Any], warmup: int = 3) -> dict[str, float]:
    for item in items[:warmup]:
        fn(item)
    out = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - started) * 1000)
    return percentiles(out)


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    settings = Settings(model=str(random_checkpoint("RN50")), library=LIBRARY, milvus_uri=str(work / "u.db"),
                        db_url=str(work / "u.sqlite"))
    encoder = load_encoder(settings)
    engine = Engine(settings, encoder=encoder)
    try:
        library(engine, args.vectors, encoder.dim, encoder.name)
        rng = random.Random(11)
        plain = ["".join(rng.sample(WORDS, 2)) for _ in range(args.queries)]
        timed = [f"{rng.choice(TIMES)}{q}" for q in plain]
        rows: dict[str, dict[str, float]] = {
            "understand, no time words": samples(lambda q: engine.understand(q), plain),
            "understand, time words": samples(lambda q: engine.understand(q), timed),
        }
        for depth in (100, 1000):
            lists = [engine.search_text(q, depth, mode="semantic", literal=True) for q in plain]
            hits = [[_hit(r) for r in results] for results in lists]
            metas = [engine.images.get_meta_many(LIBRARY, [h.image_id for h in found]) for found in hits]
            rows[f"fold of {depth} hits"] = samples(
                lambda pair: fold(pair[0], {}, pair[1], vectors=engine.vectors, library=LIBRARY),
                list(zip(hits, metas)))
            with mock.patch("searchcore.search.fold_rows", lambda m, t: fold_rows(m, t, len(m))):
                rows[f"fold of {depth} hits, all pairs at once (before)"] = samples(
                    lambda pair: fold(pair[0], {}, pair[1], vectors=engine.vectors, library=LIBRARY),
                    list(zip(hits, metas)))
            rows[f"folded at {depth}: hits kept (mean)"] = {"p50_ms": float(np.mean([
                len(fold(h, {}, m, vectors=engine.vectors, library=LIBRARY)[0]) for h, m in zip(hits, metas)])),
                "p95_ms": float("nan")}
        for top_k in (96, 1000):
            rows[f"search top {top_k}, as typed"] = samples(
                lambda q, k=top_k: engine.search_text(q, k, mode="semantic", literal=True), plain)
            rows[f"search top {top_k}, read + folded"] = samples(
                lambda q, k=top_k: engine.search_text(q, k, mode="semantic", collapse=True), plain)
        return rows
    finally:
        engine.close()


def _hit(result: Any) -> Any:
    from searchcore.stores.vectors import Hit

    return Hit(result.image_id, result.similarity or 0.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=31_783)
    parser.add_argument("--queries", type=int, default=40)
    args = parser.parse_args(argv)
    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="bench_understand_") as tmp:
        rows = run(args, Path(tmp))
    print(table(("what", "p50 ms", "p95 ms"), [(k, v["p50_ms"], v["p95_ms"]) for k, v in rows.items()]))
    added = {k: rows[f"search top {k}, read + folded"]["p50_ms"] - rows[f"search top {k}, as typed"]["p50_ms"]
             for k in (96, 1000)}
    print("added p50 (read + folded − as typed): " + ", ".join(f"top {k}: {v:.2f} ms" for k, v in added.items()))
    result = {"vectors": args.vectors, "queries": args.queries, "latency_ms": rows, "added_p50_ms": added,
              "machine": machine()}
    print(f"\nwrote {write_result('understand', result)}")


if __name__ == "__main__":
    main()
