"""Finding a picture by a fragment of its words: keyword and hybrid R@1, and shape P@5 hybrid against semantic.

A library of the demo's shapes with captions (the dataset's valid split) and N pictures of words
(demo/text_pictures.py: four Noto CJK faces, coloured noisy backgrounds, one or two lines, some with Latin and
digits), ingested with --ocr on the tiny model. The queries are every fragment of 2 to 6 pieces of each line that
only one picture holds (checked against every line and caption); a query is found when its picture ranks first.
Every query is ranked (in batches where the code has Engine.rank_texts, one search at a time before it); 200 of
them are also timed one search at a time. Run it on another checkout to compare (the code on PYTHONPATH is
measured).

Usage: python -m bench.bench_fragments [--pictures 200] [--shapes 90]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from bench._common import machine, quiet_logs, table, write_result
from demo.sample_data import write_dataset
from demo.shapes import CLASSES, caption_variants
from demo.text_pictures import unique_fragments, write_text_pictures
from searchcore.config import Settings
from searchcore.engine import Engine

TIMED = 200  # queries timed one search at a time (top 10), as the app asks them
TINY = Path(__file__).resolve().parent.parent / "demo" / "tiny_clip.pt"


def shape_precision(engine: Engine, mode: str) -> dict[str, float]:
    """P@5 of each caption-like shape query: the share of the top 5 that are that shape in that colour."""
    out = {}
    for color, shape in CLASSES:
        for query in caption_variants(color, shape):
            top = engine.search_text(query, 5, mode=mode)
            out[query] = sum(color in " ".join(r.captions) and shape in " ".join(r.captions) for r in top) / 5
    return out


def first_paths(engine: Engine, queries: list[str], mode: str) -> list[str | None]:
    """The path of each query's first picture: ranked in batches where the code measured can (rank_texts),
    else one search at a time (a checkout from before it)."""
    if hasattr(engine, "rank_texts"):
        ranked = [hits[0].image_id if hits else None for hits in engine.rank_texts(queries, 1, mode=mode)]
        meta = engine.images.get_meta_many(engine.settings.library, [i for i in ranked if i is not None])
        return [meta[i].path if i in meta else None for i in ranked]
    return [next((r.path for r in engine.search_text(q, 1, mode=mode)), None) for q in queries]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", type=int, default=200)
    parser.add_argument("--shapes", type=int, default=90)
    parser.add_argument("--queries", type=int, default=0, help="ask a fixed sample of this many (0: every one)")
    args = parser.parse_args()
    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="bench_fragments_") as tmp:
        work = Path(tmp)
        said = write_text_pictures(work / "signs", args.pictures)
        write_dataset(work / "shapes", "valid", args.shapes, seed=1, first_id=1000)
        settings = Settings(model=str(TINY), model_dir=str(work / "models"), milvus_uri=str(work / "m.db"),
                            db_url=str(work / "i.db"), device="cpu", backend="torch", precision="fp32")
        engine = Engine(settings)
        try:
            engine.ingest(work / "shapes", split="valid")
            engine.ocr_reader()
            started = time.perf_counter()
            report = engine.ingest(work / "signs", ocr=True)
            ocr_seconds = time.perf_counter() - started
            read = {r.path: r.text or "" for r in engine.search_text("x", 1000, mode="semantic")}
            captions = [v for c in CLASSES for v in caption_variants(*c)]
            queries = unique_fragments(said, captions)
            asked = random.Random(19).sample(queries, args.queries) if 0 < args.queries < len(queries) else queries
            print(f"ingested in {ocr_seconds:.0f} s; {len(asked)} of {len(queries)} fragments", flush=True)
            found: dict[str, float] = {}
            timed = random.Random(3).sample(asked, min(TIMED, len(asked)))
            for mode in ("keyword", "hybrid"):
                started = time.perf_counter()
                firsts = first_paths(engine, [q for q, _ in asked], mode)
                found[f"{mode} batched s"] = time.perf_counter() - started
                found[mode] = sum(path == name for path, (_, name) in zip(firsts, asked)) / len(asked)
                started = time.perf_counter()
                for query, _ in timed:
                    engine.search_text(query, 10, mode=mode)
                found[f"{mode} ms/query"] = (time.perf_counter() - started) * 1000 / len(timed)
            semantic, hybrid = shape_precision(engine, "semantic"), shape_precision(engine, "hybrid")
        finally:
            engine.close()
    exact = sum(read.get(name, "") == "\n".join(lines) for name, lines in said.items())
    result = {"pictures": args.pictures, "shapes": args.shapes, "added": report.added,
              "ocr_ingest_s": round(ocr_seconds, 1), "ocr_exact_pictures": exact, "fragments": len(queries),
              "queries": len(asked),
              "keyword_r1": round(found["keyword"], 4), "hybrid_r1": round(found["hybrid"], 4),
              "keyword_ms_per_query": round(found["keyword ms/query"], 1),
              "hybrid_ms_per_query": round(found["hybrid ms/query"], 1),
              "keyword_all_queries_s": round(found["keyword batched s"], 1),
              "hybrid_all_queries_s": round(found["hybrid batched s"], 1),
              "shape_queries": len(semantic), "shape_p5_semantic": round(sum(semantic.values()) / len(semantic), 4),
              "shape_p5_hybrid": round(sum(hybrid.values()) / len(hybrid), 4),
              "shape_hybrid_at_least_semantic": sum(hybrid[q] >= semantic[q] for q in semantic) / len(semantic),
              "machine": machine()}
    print(table(("what", "value"), [(k, v) for k, v in result.items() if k != "machine"]))
    print(f"\nwrote {write_result('fragments', result)}")


if __name__ == "__main__":
    main()
