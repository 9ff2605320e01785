"""Text query latency end to end (encode, search, fetch image bytes) at 31,783 images, per stage.

The library: 31,783 synthetic normalised 1024-d vectors (RN50's dimension,
with low-rank structure like real embeddings) and as many ~94 KB JPEGs in
SQLite. Queries go through RN50's text tower (random weights) on the default
CPU path. Side by side on the same vectors and query vectors: numpy brute
force, Faiss IndexFlatIP, Milvus Lite (FLAT, HNSW) asked directly, Milvus
Lite FLAT through the store's exact in-process copy (the engine's default on
Lite), and a Milvus server (HNSW, FLAT) started from the `milvus` package on
free ports. Recall@10 is against exact search. With --profile, the Lite FLAT
search is profiled.

Usage: python -m bench.bench_query [--vectors 31783] [--runs 50] [--no-server] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import (
    QUERIES,
    cache_dir,
    jpeg_split,
    machine,
    percentiles,
    quiet_logs,
    random_checkpoint,
    table,
    write_result,
)
from searchcore.config import Settings
from searchcore.models.encoder import Encoder, load_encoder
from searchcore.stores.image_db import ImageDb, open_image_store
from searchcore.stores.images import StoredImage
from searchcore.stores.vectors import MilvusVectorStore, VectorStore

LIBRARY = "bench"
DIM = 1024
TOP_K = 10
GOALS_MS = {"milvus-lite": 50.0, "milvus-server": 15.0}


# Synthetic embeddings: a LATENT-d Gaussian mapped into the full dimension plus isotropic noise. With 32 and 0.25,
# a fresh draw scores ~0.6 against its nearest stored vector (CLIP-like) and HNSW behaves as on real embeddings;
# 64 and 0.5 make a harder set (faiss HNSW M=16, ef=128: recall 0.89 at 31,783 x 1024 on it).
LATENT = 32
NOISE = 0.25


def synthetic_vectors(n: int, dim: int, seed: int = 0, latent: int = LATENT, noise: float = NOISE) -> np.ndarray:
    """Normalised vectors near a low-dimensional subspace plus noise: the shape real embeddings have."""
    basis = np.random.default_rng(12345).standard_normal((latent, dim), dtype=np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65536):
        rows = min(65536, n - start)
        block = rng.standard_normal((rows, latent), dtype=np.float32) @ basis
        block += noise * np.sqrt(latent) * rng.standard_normal((rows, dim), dtype=np.float32)
        out[start:start + rows] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def query_vectors(count: int, dim: int, latent: int = LATENT, noise: float = NOISE) -> np.ndarray:
    """Fresh draws from the same distribution as the stored vectors, as a text's vector lies among images'."""
    return synthetic_vectors(count, dim, seed=1, latent=latent, noise=noise)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Exact inner-product top-k indices per query."""
    scores = queries @ vectors.T
    part = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def recall_at_k(found: list[list[int]], truth: np.ndarray) -> float:
    """Mean fraction of the exact top-k each search found (ids are row indices here)."""
    return float(np.mean([len(set(f) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


def image_store(folder: Path, n: int) -> ImageDb:
    """SQLite with n JPEG rows (the 256 bench JPEGs, cycled), cached between runs."""
    path = folder / f"images_{n}.db"
    done = path.with_suffix(".done")
    if not done.is_file():
        path.unlink(missing_ok=True)
        store = open_image_store(str(path))
        blobs = [line.split(b"\t", 1)[1].strip() for line in (jpeg_split(256) / "bench_imgs.tsv").open("rb")]
        import base64

        jpegs = [base64.b64decode(b) for b in blobs]
        for start in range(0, n, 500):
            store.put_many(LIBRARY, [StoredImage(i, jpegs[i % len(jpegs)], "JPEG", 500, 375, f"{i:064x}")
                                     for i in range(start, min(n, start + 500))])
        store.close()
        done.touch()
    return open_image_store(str(path))


def milvus_library(store: MilvusVectorStore, library: str, model: str, vectors: np.ndarray,
                   marker: Path | None) -> None:
    """Fill a collection once (a marker file records a complete Lite fill of these very vectors between runs)."""
    import hashlib

    digest = hashlib.sha256(vectors.tobytes()).hexdigest()
    filled = marker is not None and marker.is_file() and marker.read_text() == digest
    if filled and store.count(library) == len(vectors):
        return
    store.drop(library)
    store.open_library(library, model, vectors.shape[1], create=True)
    for start in range(0, len(vectors), 2000):
        store.upsert(library, list(range(start, min(len(vectors), start + 2000))), vectors[start:start + 2000])
    store.flush(library)
    if marker is not None:
        marker.write_text(digest)


def wait_for_index(uri: str, library: str, rows: int, timeout: float = 900, load_grace: float = 120) -> float:
    """Seconds until a server collection's index is built and, for HNSW, loaded for every row.

    describe_index reports the build finished before the query node has loaded it; until then a sealed segment
    is searched through an interim index (recall 0.80 instead of 0.99 at 31,783 rows), so wait for both. (A FLAT
    collection lists no loaded sealed segments on Milvus 2.3.5, and is exact whichever way it is served.)
    """
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    start = time.perf_counter()
    built_at = None
    try:
        name = f"searchcore_{library}"
        index = client.list_indexes(name)[0]
        while time.perf_counter() - start < timeout:
            info = client.describe_index(name, index)
            if int(info.get("indexed_rows", 0)) >= rows and int(info.get("pending_index_rows", 0)) == 0:
                built_at = built_at or time.perf_counter()
                if info.get("index_type") != "HNSW":
                    break
                segments = client.list_loaded_segments(name)
                if sum(s.num_rows for s in segments if s.index_id) >= rows:
                    break
                if time.perf_counter() - built_at > load_grace:
                    print(f"warning: {name}: index built but not loaded after {load_grace:.0f}s; measuring anyway")
                    break
            time.sleep(1)
        return time.perf_counter() - start
    finally:
        client.close()


@contextlib.contextmanager
def milvus_server(base: Path) -> Iterator[str]:
    """A Milvus standalone server from the PyPI `milvus` package on free ports, as tests/conftest.py starts it."""
    from milvus import MilvusServer

    server = MilvusServer()
    server.set_base_dir(str(base))
    # Ports the OS picks, not the package's 19530 upwards, which a server started at the same moment
    # (another benchmark, a test session) may take between its port check and its bind.
    server.config.update(**{key: free_port() for key in server.config_keys if key.endswith("_port")})
    server.webservice_port = free_port()
    server.start()
    if not server.running:
        raise RuntimeError(f"the Milvus server stopped during start-up; see {base}/logs")
    try:
        yield f"http://127.0.0.1:{server.listen_port}"
    finally:
        server.stop()


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Variant:
    """One way to answer a query vector with top-k ids (Milvus, or an in-process exact search)."""

    def __init__(self, name: str, backend: str, index: str, search: Callable[[np.ndarray], list[int]]) -> None:
        self.name, self.backend, self.index, self.search = name, backend, index, search


def milvus_variant(name: str, store: VectorStore, library: str, backend: str, index: str) -> Variant:
    return Variant(name, backend, index, lambda q: [h.image_id for h in store.search(library, q[None, :], TOP_K)[0]])


def measure(variant: Variant, encoder: Encoder, images: ImageDb, queries: np.ndarray, truth: np.ndarray,
            texts: list[str], runs: int) -> dict[str, Any]:
    """Search-stage latency and recall on query vectors, then end-to-end latency per stage on text queries."""
    search_ms: list[float] = []
    found: list[list[int]] = []
    for i in range(len(queries)):
        start = time.perf_counter()
        found.append(variant.search(queries[i]))
        search_ms.append((time.perf_counter() - start) * 1000)
    stages: dict[str, list[float]] = {"encode": [], "search": [], "fetch": [], "total": []}
    for i in range(runs + 3):
        t0 = time.perf_counter()
        vector = encoder.encode_texts([texts[i % len(texts)]])[0]
        t1 = time.perf_counter()
        ids = variant.search(vector)
        t2 = time.perf_counter()
        fetched = images.get_many(LIBRARY, ids)
        t3 = time.perf_counter()
        assert len(fetched) == len(ids) == TOP_K
        if i >= 3:
            for stage, ms in zip(stages, ((t1 - t0), (t2 - t1), (t3 - t2), (t3 - t0))):
                stages[stage].append(ms * 1000)
    return {"variant": variant.name, "backend": variant.backend, "index": variant.index,
            "recall_at_10": recall_at_k(found, truth), "search": percentiles(search_ms[3:]),
            **{f"e2e_{stage}": percentiles(samples) for stage, samples in stages.items()}}


def profile_lite_search(store: MilvusVectorStore, library: str, query: np.ndarray, runs: int = 10) -> list[dict]:
    """Where a Milvus Lite search spends its time: cProfile of the collection's search inside the Lite server.

    milvus-lite runs its gRPC server in threads of this process; the profile calls its Collection directly
    (an internal API, so this is best effort) to see past the thread boundary.
    """
    try:
        from milvus_lite.server_manager import server_manager_instance

        _, db, _ = server_manager_instance._servers[str(Path(store.uri).resolve())]
        collection = db.get_collection(f"searchcore_{library}")
    except Exception as exc:  # noqa: BLE001 - the internals moved: no profile rather than no benchmark
        return [{"error": f"could not reach milvus-lite internals: {exc}"}]
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        collection.search([query.tolist()], top_k=TOP_K, metric_type="IP", output_fields=[])
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:8]  # type: ignore[attr-defined]
    return [{"function": f"{Path(f).name}:{line}({fn})", "ms_per_search": v[2] * 1000 / runs,
             "share": v[2] / total} for (f, line, fn), v in rows]


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = machine()
    checkpoint = random_checkpoint("RN50")
    folder = cache_dir() / f"query_{args.vectors}x{DIM}"
    folder.mkdir(parents=True, exist_ok=True)
    settings = Settings(model=str(checkpoint), model_dir=str(cache_dir() / "models"), device="cpu",
                        backend=args.backend, precision="auto")
    encoder = load_encoder(settings)
    vectors = synthetic_vectors(args.vectors, DIM, latent=args.latent, noise=args.noise)
    queries = query_vectors(args.runs + 3, DIM, latent=args.latent, noise=args.noise)
    truth = exact_top_k(vectors, queries)
    images = image_store(folder, args.vectors)
    texts = QUERIES
    rows: list[dict[str, Any]] = []
    profile: list[dict] = []

    def numpy_search(q: np.ndarray) -> list[int]:
        scores = vectors @ q
        top = np.argpartition(-scores, TOP_K)[:TOP_K]
        return top[np.argsort(-scores[top])].tolist()

    rows.append(measure(Variant("numpy brute force (in process)", "numpy", "exact", numpy_search), encoder, images,
                        queries, truth, texts, args.runs))
    import faiss

    flat = faiss.IndexFlatIP(DIM)
    flat.add(vectors)
    rows.append(measure(Variant("Faiss IndexFlatIP (in process)", "faiss", "exact",
                                lambda q: flat.search(q[None, :], TOP_K)[1][0].tolist()),
                        encoder, images, queries, truth, texts, args.runs))

    for index in args.lite_indexes:
        store = MilvusVectorStore(str(folder / f"lite_{index}.db"), index=index, exact_copy=False)
        try:
            milvus_library(store, LIBRARY, encoder.name, vectors, folder / f"lite_{index}.done")
            rows.append(measure(milvus_variant(f"Milvus Lite {index}", store, LIBRARY, "milvus-lite", index),
                                encoder, images, queries, truth, texts, args.runs))
            if args.profile and index == "FLAT":
                profile = profile_lite_search(store, LIBRARY, queries[0])
        finally:
            store.close()
    if args.exact_copy:
        store = MilvusVectorStore(str(folder / "lite_FLAT.db"), index="FLAT")
        try:
            milvus_library(store, LIBRARY, encoder.name, vectors, folder / "lite_FLAT.done")
            built_by_fill = store.copy_status(LIBRARY) == "ready"  # a fresh fill builds it as it upserts
            start = time.perf_counter()
            store.search(LIBRARY, queries[:1], TOP_K)  # answered by Milvus; starts loading the copy
            if not store.wait_for_copy(LIBRARY, timeout=900):
                raise RuntimeError("the exact copy did not load")
            rows.append(measure(milvus_variant("Milvus Lite FLAT + exact in-process copy", store, LIBRARY,
                                               "milvus-lite", "FLAT+copy"), encoder, images, queries, truth, texts,
                                args.runs))
            rows[-1]["copy_load_s"] = None if built_by_fill else time.perf_counter() - start
        finally:
            store.close()

    server_build: dict[str, float] = {}
    if args.server:
        with tempfile.TemporaryDirectory(prefix="bench_milvus_") as base, milvus_server(Path(base)) as uri:
            for index in args.server_indexes:
                store = MilvusVectorStore(uri, index=index)
                library = f"bench_{index.lower()}"
                try:
                    start = time.perf_counter()
                    milvus_library(store, library, encoder.name, vectors, None)
                    waited = wait_for_index(uri, library, len(vectors))
                    server_build[index] = time.perf_counter() - start
                    store.search(library, queries[:1], TOP_K)
                    rows.append(measure(milvus_variant(f"Milvus server {index}", store, library, "milvus-server",
                                                       index), encoder, images, queries, truth, texts, args.runs))
                    rows[-1]["index_wait_s"] = waited
                finally:
                    store.close()
    images.close()
    return {"benchmark": "query", "vectors": args.vectors, "dim": DIM, "runs": args.runs,
            "vector_data": f"synthetic: {args.latent}-d latent + noise {args.noise}",
            "encoder": {"model": "RN50 text tower (RBT3), random weights", "backend": encoder.backend,
                        "precision": encoder.precision},
            "rows": rows, "server_fill_and_index_s": server_build, "lite_flat_profile": profile,
            "goals": goals(rows), "machine": started}


def goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for backend, limit in GOALS_MS.items():
        candidates = [r for r in rows if r["backend"] == backend]
        if not candidates:
            continue
        default = "FLAT+copy" if backend == "milvus-lite" else "HNSW"  # what Settings(index="auto") picks
        for row in candidates:
            value = row["e2e_total"]["p50_ms"]
            tag = " (the engine's default)" if row["index"] == default else ""
            out.append({"goal": f"{row['variant']}{tag}: end-to-end p50 <= {limit:.0f} ms", "value": value,
                        "met": value <= limit})
    return out


def report(result: dict[str, Any]) -> str:
    rows = [(r["variant"], r["recall_at_10"], r["search"]["p50_ms"], r["search"]["p95_ms"],
             r["e2e_encode"]["p50_ms"], r["e2e_search"]["p50_ms"], r["e2e_fetch"]["p50_ms"],
             r["e2e_total"]["p50_ms"], r["e2e_total"]["p95_ms"]) for r in result["rows"]]
    enc = result["encoder"]
    lines = [f"Text query, {result['vectors']:,} x {result['dim']}-d vectors ({result['vector_data']}) + JPEGs in "
             f"SQLite, top-{TOP_K}; "
             f"encoder {enc['backend']} {enc['precision']}; {result['machine']['cores']} cores, load "
             f"{result['machine']['load_avg_1m_start']:.1f} at start",
             table(("search", "recall@10", "search p50 ms", "search p95", "encode p50", "search p50", "fetch p50",
                    "total p50 ms", "total p95 ms"), rows)]
    if result["lite_flat_profile"]:
        lines += ["", "Milvus Lite FLAT search, cProfile (self time per search, top functions):"]
        lines += [f"  {p.get('ms_per_search', 0):7.1f} ms {p.get('share', 0):5.0%}  {p.get('function', p)}"
                  for p in result["lite_flat_profile"]]
    for r in result["rows"]:
        if "copy_load_s" in r:
            lines.append(f"{r['variant']}: " + ("built as the fill upserted" if r["copy_load_s"] is None else
                         f"loaded from the Lite file in {r['copy_load_s']:.1f} s (Milvus answered meanwhile)"))
    lines.append("")
    lines += [f"{'MET ' if g['met'] else 'MISSED'} {g['goal']}: {g['value']:.1f} ms" for g in result["goals"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=31783)
    parser.add_argument("--runs", type=int, default=50, help="timed queries per variant (default 50)")
    parser.add_argument("--latent", type=int, default=LATENT, help=f"synthetic data's latent dimension ({LATENT})")
    parser.add_argument("--noise", type=float, default=NOISE, help=f"synthetic data's noise ({NOISE})")
    parser.add_argument("--backend", default="auto", help="text encoder backend (default: the CPU default path)")
    parser.add_argument("--lite-indexes", default="FLAT",
                        help="Milvus Lite indexes to measure, e.g. FLAT,HNSW (HNSW on Lite is slower than FLAT: the "
                             "per-row bookkeeping the profile shows does not depend on the index)")
    parser.add_argument("--server-indexes", default="HNSW,FLAT")
    parser.add_argument("--no-server", dest="server", action="store_false", help="skip the Milvus server")
    parser.add_argument("--profile", action="store_true", help="profile the Milvus Lite FLAT search")
    parser.add_argument("--no-exact-copy", dest="exact_copy", action="store_false",
                        help="skip Milvus Lite through the store's exact in-process copy")
    parser.add_argument("--fresh", action="store_true", help="rebuild the cached Lite files and SQLite first")
    args = parser.parse_args(argv)
    args.lite_indexes = [i for i in args.lite_indexes.split(",") if i]
    args.server_indexes = [i for i in args.server_indexes.split(",") if i]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks that stop the server
    if args.fresh:
        shutil.rmtree(cache_dir() / f"query_{args.vectors}x{DIM}", ignore_errors=True)
    quiet_logs()
    result = run(args)
    print(report(result))
    print(f"\nwrote {write_result('query', result)}")


if __name__ == "__main__":
    main()
