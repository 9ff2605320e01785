"""Search at scale (opt-in, `make bench-scale`): 1,000,000 vectors, the index the engine picks, recall and latency.

The engine's `index=auto` on a Milvus server is HNSW (M=16, efConstruction=200,
ef=max(128, k)); this fills a server started from the `milvus` package through
`MilvusVectorStore` (the engine's own code), waits for the index, then
measures recall@10 against exact search and the search latency (p50, p95).

Vectors are synthetic, normalised, near a 32-d subspace plus noise (the shape
real embeddings have; i.i.d. random vectors have no neighbourhoods to find);
queries are fresh draws from the same distribution. Recall depends on the
data: on a real library, `searchcore evaluate --exact` measures it.
The default dimension is 512 (ViT-B-16's) rather than RN50's 1024, so two
copies (this process and the server) plus the graph fit the machine's memory.

Usage: python -m bench.bench_scale [--vectors 1000000] [--dim 512] [--queries 200] [--uri milvus-lite.db]
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import machine, percentiles, quiet_logs, table, write_result
from bench.bench_query import (
    LATENT,
    NOISE,
    exact_top_k,
    query_vectors,
    synthetic_vectors,
    wait_for_index,
)
from searchcore.stores.vectors import MilvusVectorStore
from tests.support import PrivateMilvus

GOAL_RECALL = 0.98
GOAL_P50_MS = 20.0
TOP_K = 10
LIBRARY = "scale"


def exact_in_chunks(vectors: np.ndarray, queries: np.ndarray, chunk: int = 200_000) -> np.ndarray:
    """Exact top-k over a large matrix, a chunk of rows at a time."""
    best_ids = np.zeros((len(queries), 0), dtype=np.int64)
    best_scores = np.zeros((len(queries), 0), dtype=np.float32)
    for start in range(0, len(vectors), chunk):
        block = vectors[start:start + chunk]
        local = exact_top_k(block, queries)
        scores = np.take_along_axis(queries @ block.T, local, axis=1)
        ids = np.concatenate([best_ids, local + start], axis=1)
        all_scores = np.concatenate([best_scores, scores], axis=1)
        order = np.argsort(-all_scores, axis=1)[:, :TOP_K]
        best_ids, best_scores = np.take_along_axis(ids, order, axis=1), np.take_along_axis(all_scores, order, axis=1)
    return best_ids


def fill(store: MilvusVectorStore, vectors: np.ndarray, batch: int = 5000) -> float:
    """Seconds to upsert every vector through the engine's store and flush."""
    store.drop(LIBRARY)
    store.open_library(LIBRARY, "synthetic", vectors.shape[1], create=True)
    start = time.perf_counter()
    for first in range(0, len(vectors), batch):
        store.upsert(LIBRARY, list(range(first, min(len(vectors), first + batch))), vectors[first:first + batch])
    store.flush(LIBRARY)
    return time.perf_counter() - start


def measure(store: MilvusVectorStore, queries: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Recall@10 and per-query latency of the engine's search on the filled library."""
    for q in queries[:5]:
        store.search(LIBRARY, q[None, :], TOP_K)
    found, samples = [], []
    for q in queries:
        start = time.perf_counter()
        hits = store.search(LIBRARY, q[None, :], TOP_K)[0]
        samples.append((time.perf_counter() - start) * 1000)
        found.append([h.image_id for h in hits])
    recall = float(np.mean([len(set(f) & set(t.tolist())) / TOP_K for f, t in zip(found, truth)]))
    return {"recall_at_10": recall, **percentiles(samples)}


def ef_sweep(uri: str, queries: np.ndarray, truth: np.ndarray, efs: list[int]) -> list[dict[str, Any]]:
    """Recall and latency at other HNSW ef values, through pymilvus directly (the engine fixes ef=max(128, k)),
    with Session consistency as the engine's search uses."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    rows = []
    try:
        for ef in efs:
            params = {"metric_type": "IP", "params": {"ef": ef}}
            found, samples = [], []
            for q in queries:
                start = time.perf_counter()
                hits = client.search(f"searchcore_{LIBRARY}", data=[q.tolist()], limit=TOP_K, search_params=params,
                                     output_fields=[], consistency_level="Session")[0]
                samples.append((time.perf_counter() - start) * 1000)
                found.append([int(h["id"]) for h in hits])
            recall = float(np.mean([len(set(f) & set(t.tolist())) / TOP_K for f, t in zip(found, truth)]))
            rows.append({"ef": ef, "recall_at_10": recall, **percentiles(samples)})
    finally:
        client.close()
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    described = machine()
    vectors = synthetic_vectors(args.vectors, args.dim, latent=args.latent, noise=args.noise)
    queries = query_vectors(args.queries, args.dim, latent=args.latent, noise=args.noise)
    truth = exact_in_chunks(vectors, queries)
    result: dict[str, Any] = {"benchmark": "scale", "vectors": args.vectors, "dim": args.dim,
                              "queries": args.queries,
                              "vector_data": f"synthetic: {args.latent}-d latent + noise {args.noise}"}
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as base:
        if args.uri:
            store = MilvusVectorStore(args.uri, index=args.index)
            result["backend"] = store.backend
            result["fill_s"] = fill(store, vectors)
            result["index_wait_s"] = 0.0
            result.update(measure(store, queries, truth))
            result["index"] = store.meta(LIBRARY).index  # type: ignore[union-attr]
            store.drop(LIBRARY)
            store.close()
        else:
            with PrivateMilvus(Path(base)) as server:
                uri = server.uri
                store = MilvusVectorStore(uri, index=args.index)
                result["backend"] = store.backend
                result["fill_s"] = fill(store, vectors)
                result["index_wait_s"] = wait_for_index(uri, LIBRARY, len(vectors), timeout=args.index_timeout)
                result.update(measure(store, queries, truth))
                meta = store.meta(LIBRARY)
                result["index"] = meta.index if meta else None
                result["index_params"] = meta.index_params if meta else None
                store.close()
                if result["index"] == "HNSW" and args.ef_sweep:
                    result["ef_sweep"] = ef_sweep(uri, queries, truth, args.ef_sweep)
    result["total_s"] = time.perf_counter() - started
    result["goals"] = [
        {"goal": f"recall@10 >= {GOAL_RECALL}", "value": result["recall_at_10"],
         "met": result["recall_at_10"] >= GOAL_RECALL},
        {"goal": f"search p50 <= {GOAL_P50_MS:.0f} ms", "value": result["p50_ms"],
         "met": result["p50_ms"] <= GOAL_P50_MS}]
    result["machine"] = described
    return result


def report(result: dict[str, Any]) -> str:
    rows = [(f"{result['vectors']:,}", result["dim"], result["backend"], result["index"], result["fill_s"],
             result["index_wait_s"], result["recall_at_10"], result["p50_ms"], result["p95_ms"])]
    lines = [f"Search at scale, {result['queries']} queries, {result['vector_data']}, top-{TOP_K}; "
             f"{result['machine']['cores']} cores, load {result['machine']['load_avg_1m_start']:.1f}",
             table(("vectors", "dim", "backend", "index", "fill s", "index wait s", "recall@10", "p50 ms", "p95 ms"),
                   rows), ""]
    if result.get("ef_sweep"):
        lines += ["HNSW ef (the engine uses max(128, k)):",
                  table(("ef", "recall@10", "p50 ms", "p95 ms"),
                        [(r["ef"], r["recall_at_10"], r["p50_ms"], r["p95_ms"]) for r in result["ef_sweep"]]), ""]
    lines += [f"{'MET ' if g['met'] else 'MISSED'} {g['goal']}: {g['value']:.3f}" for g in result["goals"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512, help="vector dimension (default 512, ViT-B-16's)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--latent", type=int, default=LATENT, help=f"synthetic data's latent dimension ({LATENT})")
    parser.add_argument("--noise", type=float, default=NOISE, help=f"synthetic data's noise ({NOISE})")
    parser.add_argument("--index", default="auto", help="the engine's index setting (default auto)")
    parser.add_argument("--uri", help="an existing Milvus URI or a Lite file instead of a fresh server")
    parser.add_argument("--index-timeout", type=float, default=3600, help="seconds to wait for the index build")
    parser.add_argument("--ef-sweep", default="64,128,256,512", help="HNSW ef values to compare ('' to skip)")
    args = parser.parse_args(argv)
    args.ef_sweep = [int(ef) for ef in args.ef_sweep.split(",") if ef]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks that stop the server
    quiet_logs()
    result = run(args)
    print(report(result))
    print(f"\nwrote {write_result(f'scale_{args.vectors}x{args.dim}', result)}")


if __name__ == "__main__":
    main()
