"""Moving a library to a bigger model (issue 30): `reindex` against a fresh ingest of the same pictures, and the
search latency while the reindex runs against idle, from one run.

The library is a Chinese-CLIP split of photo-sized JPEGs (500x375, ~94 KB) ingested with model A; model B is a
second checkpoint (default RN50 -> ViT-B-16, both with random weights: their cost, not their answers). In one
process, on fresh Lite + SQLite stores, with both encoders loaded before anything is timed:

  1. a fresh ingest of the split with B into a library of its own (the reference);
  2. text searches on the A library while nothing else runs (idle);
  3. `Engine.start_reindex(B)` of the A library, with the same text searches asked in a loop from the main thread
     until it ends (during).

Usage: python -m bench.bench_reindex [--images 300] [--model-a RN50] [--model-b ViT-B-16] [--backend auto]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import QUERIES, jpeg_split, percentiles, quiet_logs, random_checkpoint, table, write_result
from searchcore.config import Settings
from searchcore.engine import Engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--model-a", default="RN50")
    parser.add_argument("--model-b", default="ViT-B-16")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--idle-queries", type=int, default=60)
    args = parser.parse_args()
    quiet_logs()
    data = jpeg_split(args.images)
    a, b = random_checkpoint(args.model_a), random_checkpoint(args.model_b)
    with tempfile.TemporaryDirectory(prefix="bench-reindex-") as tmp:
        base = Settings(model=str(a), model_dir=str(Path(tmp) / "models"), backend=args.backend, device="cpu",
                        milvus_uri=str(Path(tmp) / "milvus.db"), db_url=str(Path(tmp) / "images.db"))
        with Engine(base) as engine:
            engine.encoder_of(str(b))  # both models loaded (and converted) before anything is timed
            engine.ingest(data, split="bench", library="on_a")
            fresh_seconds = _fresh_ingest(base.replace(model=str(b)), data, tmp, engine)
            engine.vectors.wait_for_copy("on_a")  # type: ignore[union-attr]
            _latencies(engine, 2)  # warm-up: the text tower's first calls
            idle = _latencies(engine, args.idle_queries)
            status = engine.start_reindex(str(b), "on_a")
            during: list[float] = []
            while status.state not in ("done", "failed"):
                during.extend(_latencies(engine, 1))
            assert status.report is not None, status.error
            report = status.report
            result: dict[str, Any] = {
                "images": args.images, "model_a": args.model_a, "model_b": args.model_b,
                "backend": engine.encoder.backend,
                "fresh_ingest_b_s": round(fresh_seconds, 2), "reindex_s": round(report.seconds, 2),
                "fresh_ingest_b_img_s": round(args.images / fresh_seconds, 1),
                "reindex_img_s": round(args.images / report.seconds, 1),
                "search_idle": {**percentiles(idle), "queries": len(idle)},
                "search_during_reindex": {**percentiles(during), "queries": len(during)},
                "report": report.to_json()}
    rows = [["fresh ingest with B", result["fresh_ingest_b_s"], result["fresh_ingest_b_img_s"]],
            ["reindex A -> B", result["reindex_s"], result["reindex_img_s"]]]
    print(table(["run", "seconds", "images/s"], rows))
    print(table(["search (semantic, top 10)", "p50 ms", "p95 ms", "queries"],
                [[name, result[key]["p50_ms"], result[key]["p95_ms"], result[key]["queries"]]
                 for name, key in (("idle", "search_idle"), ("during the reindex", "search_during_reindex"))]))
    print(f"wrote {write_result('reindex', result)}")


def _fresh_ingest(settings: Settings, data: Path, tmp: str, loaded: Engine) -> float:
    """Seconds of an ingest of the split with model B into stores of its own (B's encoder already loaded)."""
    folder = Path(tmp) / "fresh"
    folder.mkdir()
    with Engine(settings.replace(milvus_uri=str(folder / "milvus.db"), db_url=str(folder / "images.db")),
                encoder=loaded.encoder_of(settings.model)) as fresh:
        return fresh.ingest(data, split="bench").seconds


def _latencies(engine: Engine, rounds: int) -> list[float]:
    """Milliseconds of each text search of QUERIES on the A library, `rounds` times over."""
    samples = []
    for _ in range(rounds):
        for query in QUERIES:
            start = time.perf_counter()
            engine.search_text(query, 10, "on_a", mode="semantic")
            samples.append((time.perf_counter() - start) * 1000)
    return samples


if __name__ == "__main__":
    main()
