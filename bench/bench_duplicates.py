"""Duplicate finding at scale: the exact all-pairs scan from 2,500 to 31,783 vectors of dim 1024, and its growth.

Vectors are synthetic (bench_query.synthetic_vectors: normalised, near a 32-d subspace plus noise, so a
vector's nearest other scores ~0.6, as CLIP embeddings of distinct photos do) with near-copies planted:
for one row in 200, one to three copies that score 0.97-0.999 against it. The scan must return exactly
the planted groups; the table says so for each size. It scores n(n-1)/2 pairs, so its time should grow
as n²: the growth column is the exponent x of n^x between one size and the one before, from CPU time
(both BLAS threads together), which other work on a shared machine disturbs far less than wall time.

The end-to-end command at the largest size is measured too (unless --no-store): a Milvus Lite library of
those vectors (filled once and cached), read back through the engine as `searchcore duplicates` reads it,
then scanned.

Usage: python -m bench.bench_duplicates [--sizes 2500,5000,10000,20000,31783] [--dim 1024] [--repeat 2] [--no-store]
"""

from __future__ import annotations

import argparse
import math
import time
import tracemalloc
from typing import Any

import numpy as np

from bench._common import cache_dir, machine, quiet_logs, table, write_result
from bench.bench_query import milvus_library, synthetic_vectors
from searchcore.config import DUPLICATE_THRESHOLD, Settings
from searchcore.duplicates import BLOCK, _load_vectors, duplicate_groups, find_duplicates
from searchcore.engine import Engine
from searchcore.stores.factory import open_stores, open_vector_store

LIBRARY = "dups"
PLANT_EVERY = 200


def planted_vectors(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, set[frozenset[int]]]:
    """Synthetic vectors with near-copies written over some rows, and the groups they form (row numbers)."""
    vectors = synthetic_vectors(n, dim, seed=seed)
    rng = np.random.default_rng(seed + 1)
    rows = rng.permutation(n)
    groups, used = set(), 0
    for _ in range(n // PLANT_EVERY):
        source, copies = int(rows[used]), rows[used + 1:used + 1 + int(rng.integers(1, 4))]
        used += 1 + len(copies)
        for row in copies:
            noise = rng.standard_normal(dim).astype(np.float32) / np.sqrt(dim)
            copy = vectors[source] + rng.uniform(0.05, 0.25) * noise  # cosine ~ 1/sqrt(1 + eps²): 0.97-0.999
            vectors[row] = copy / np.linalg.norm(copy)
        groups.add(frozenset([source, *map(int, copies)]))
    return vectors, groups


def scored_entries(n: int, block: int = BLOCK) -> int:
    """Similarity entries the tiled scan computes (the upper-triangle tiles, diagonal tiles in full)."""
    return sum(min(block, n - start) * (n - start) for start in range(0, n, block))


def scan(n: int, dim: int, repeat: int) -> dict[str, Any]:
    """Best-of-repeat seconds and peak Python-heap MB of the scan at one size, and whether it found the plants."""
    vectors, planted = planted_vectors(n, dim)
    ids = list(range(n))
    seconds, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        groups = duplicate_groups(ids, vectors, DUPLICATE_THRESHOLD)
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    tracemalloc.start()  # numpy reports its buffers to tracemalloc; this run is not timed
    duplicate_groups(ids, vectors, DUPLICATE_THRESHOLD)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    best = min(seconds)
    pairs = n * (n - 1) // 2
    return {"vectors": n, "pairs": pairs, "seconds": best, "cpu_seconds": min(cpu), "ns_per_pair": best / pairs * 1e9,
            "gflops": 2 * dim * scored_entries(n) / best / 1e9, "input_mb": vectors.nbytes / 1e6,
            "peak_mb": peak / 1e6, "groups": len(groups), "planted": len(planted),
            "exact": {frozenset(g.images) for g in groups} == planted}


def end_to_end(n: int, dim: int) -> dict[str, Any]:
    """A Milvus Lite library of the largest size: fill once, then read every vector and scan, as the CLI does."""
    folder = cache_dir() / f"duplicates_{n}x{dim}"
    folder.mkdir(parents=True, exist_ok=True)
    vectors, planted = planted_vectors(n, dim)
    settings = Settings(milvus_uri=str(folder / "milvus.db"), db_url=str(folder / "images.db"), library=LIBRARY,
                        index="FLAT", device="cpu")
    store = open_vector_store(settings, exact_copy=False)
    start = time.perf_counter()
    milvus_library(store, LIBRARY, "synthetic", vectors, folder / "filled")
    fill = time.perf_counter() - start
    engine = Engine(settings, open_stores(settings, vectors=store))
    try:
        start = time.perf_counter()
        ids, loaded = _load_vectors(engine.vectors, LIBRARY, dim)
        read = time.perf_counter() - start
        start = time.perf_counter()
        groups = find_duplicates(engine.stores, LIBRARY)
        total = time.perf_counter() - start
    finally:
        engine.close()
    return {"vectors": len(ids), "fill_s": fill, "read_s": read, "total_s": total,
            "exact": {frozenset(g.images) for g in groups} == planted}


def report(result: dict[str, Any]) -> str:
    rows, previous = [], None
    for r in result["scan"]:
        growth = (math.log(r["cpu_seconds"] / previous["cpu_seconds"]) / math.log(r["vectors"] / previous["vectors"])
                  if previous else None)
        rows.append((r["vectors"], r["pairs"], r["seconds"], r["cpu_seconds"], r["ns_per_pair"], growth, r["gflops"],
                     r["input_mb"], r["peak_mb"], f"{r['groups']}/{r['planted']}" + (" exact" if r["exact"] else
                                                                                     " WRONG")))
        previous = r
    m = result["machine"]
    lines = [f"Exact duplicate scan, dim {result['dim']}, threshold {DUPLICATE_THRESHOLD}, tiles of {BLOCK}; "
             f"{m['cpu']}, {m['cores']} cores, numpy {m['versions'].get('numpy')}, load "
             f"{m['load_avg_1m_start']:.1f} at start, {m['load_avg_1m_end']:.1f} at the end",
             table(("vectors", "pairs", "wall s", "CPU s", "wall ns/pair", "CPU growth (n^x)", "GFLOP/s (wall)",
                    "input MB", "peak MB", "groups found/planted"), rows)]
    e2e = result.get("end_to_end")
    if e2e:
        lines += ["", f"find_duplicates on a Milvus Lite library of {e2e['vectors']:,} vectors: "
                      f"{e2e['total_s']:.1f} s in all, of which reading the vectors {e2e['read_s']:.1f} s; "
                      f"groups {'exact' if e2e['exact'] else 'WRONG'} (the one-off fill took {e2e['fill_s']:.1f} s)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2500,5000,10000,20000,31783", help="library sizes, ascending")
    parser.add_argument("--dim", type=int, default=1024, help="vector dimension (default 1024, RN50's)")
    parser.add_argument("--repeat", type=int, default=2, help="timed scans per size; the best counts (default 2)")
    parser.add_argument("--no-store", dest="store", action="store_false",
                        help="skip the end-to-end run through a Milvus Lite library")
    args = parser.parse_args(argv)
    quiet_logs()
    started = machine()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    result: dict[str, Any] = {"benchmark": "duplicates", "dim": args.dim, "threshold": DUPLICATE_THRESHOLD,
                              "block": BLOCK, "machine": started, "scan": []}
    for n in sizes:
        result["scan"].append(scan(n, args.dim, args.repeat))
        print(f"scanned {n} vectors in {result['scan'][-1]['seconds']:.2f} s", flush=True)
    if args.store:
        result["end_to_end"] = end_to_end(sizes[-1], args.dim)
    path = write_result("duplicates", result)  # records the load at the end, which the report shows
    print(report(result))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
