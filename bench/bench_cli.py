"""Cold start: one `searchcore search "…" --json` from a fresh process, and the app until it serves.

RN50 (random weights) on the default CPU path with warm model caches (IR, compiled blobs, spec index), over a
Milvus Lite library of N synthetic 1024-d vectors and as many JPEGs in SQLite (bench_query's library), with
its search snapshot saved (stores/snapshot.py). The whole command is timed `--runs` times answered from the
snapshot and as many times through Milvus Lite (the snapshot moved aside), the two taking turns so a busy
spell on a shared machine hits both alike. Fresh processes report where the time goes, phase by phase, and
`python -X importtime` the slowest imports.

Usage: python -m bench.bench_cli [--vectors 31783] [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench._common import QUERIES, ROOT, cache_dir, machine, random_checkpoint, table, write_result
from bench.bench_query import DIM, LIBRARY, image_store, milvus_library, synthetic_vectors
from tests.support import free_port

GOAL_CLI_S = 1.5
GOAL_APP_S = 5.0

# Runs in a fresh interpreter: the same steps as `searchcore search --json`, timed one by one.
PHASES = r"""
import json, sys, time
t0 = time.perf_counter(); marks = {}
def mark(name):
    marks[name] = round(time.perf_counter() - t0 - sum(marks.values()), 4)
from searchcore import cli
from searchcore.config import Settings
mark("import searchcore")
settings = Settings.from_env()
from searchcore.engine import build_engine
# as `searchcore search` does, minus the overlap of loading the encoder while the stores open
engine = build_engine(settings, exact_copy=False, one_question=True); mark("open stores (and read the snapshot)")
encoder = engine.encoder; mark("load encoder")
vector = encoder.encode_texts([sys.argv[1]]); mark("encode text")
hits = engine.search_text(sys.argv[1], 10); mark("search (encode + vector search + captions)")
snapshot = engine.vectors.snapshot is not None
engine.close(); mark("close")
print(json.dumps({"phases": marks, "torch_imported": "torch" in sys.modules, "hits": len(hits),
                  "snapshot": snapshot, "pymilvus_imported": "pymilvus" in sys.modules}))
"""


def library_env(vectors: int) -> dict[str, str]:
    """SEARCHCORE_* for the bench library, filled once (cached between runs)."""
    from searchcore.config import Settings
    from searchcore.models.encoder import load_encoder
    from searchcore.stores import snapshot
    from searchcore.stores.vectors import MilvusVectorStore

    folder = cache_dir() / f"query_{vectors}x{DIM}"
    folder.mkdir(parents=True, exist_ok=True)
    settings = Settings(model=str(random_checkpoint("RN50")), model_dir=str(cache_dir() / "models"), device="cpu",
                        precision="auto", milvus_uri=str(folder / "cli_lite.db"),
                        db_url=str(folder / f"images_{vectors}.db"), library=LIBRARY)
    image_store(folder, vectors).close()
    model = load_encoder(settings).name  # also warms the IR, blob and spec caches
    store = MilvusVectorStore(settings.milvus_uri)
    try:
        milvus_library(store, LIBRARY, model, synthetic_vectors(vectors, DIM), folder / "cli_lite.filled")
        if snapshot.load(settings.milvus_uri, LIBRARY) is None:  # closing with a complete copy saves one
            store.open_library(LIBRARY, model, DIM, create=False)
            store.wait_for_copy(LIBRARY, 900)
    finally:
        store.close()
    names = ("model", "model_dir", "device", "precision", "milvus_uri", "db_url", "library")
    return {**os.environ, **{f"SEARCHCORE_{n.upper()}": str(getattr(settings, n)) for n in names}}


def time_pair(command: list[str], env: dict[str, str], runs: int, snapshot_file: Path) -> dict[str, Any]:
    """Wall seconds of a whole command, answered from the snapshot and through Lite (the snapshot moved aside),
    taking turns run by run."""
    aside = snapshot_file.with_name(snapshot_file.name + ".aside")
    subprocess.run(command, env=env, check=True, capture_output=True)  # warm the OS page cache
    times: dict[str, list[float]] = {"snapshot": [], "lite": []}
    try:
        for _ in range(runs):
            for path in ("snapshot", "lite"):
                if path == "lite":
                    snapshot_file.rename(aside)
                started = time.perf_counter()
                subprocess.run(command, env=env, check=True, capture_output=True)
                times[path].append(time.perf_counter() - started)
                if path == "lite":
                    aside.rename(snapshot_file)
    finally:
        if aside.exists():
            aside.rename(snapshot_file)
    return {path: {"runs": runs, "median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "all_s": t}
            for path, t in times.items()}


def slowest_imports(env: dict[str, str], n: int = 8) -> list[tuple[str, float]]:
    """The imports `searchcore search` spends most on, cumulative seconds (python -X importtime)."""
    found = subprocess.run([sys.executable, "-X", "importtime", "-c", "import searchcore.cli"], env=env, cwd=ROOT,
                           check=True, capture_output=True, text=True).stderr
    rows = []
    for line in found.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((parts[2].rstrip(), int(parts[1]) / 1e6))
    # importtime indents a module two spaces per level: level 1 is what the top modules import directly
    top = [(name.strip(), t) for name, t in rows if len(name) - len(name.lstrip()) == 3]
    return sorted(top, key=lambda r: -r[1])[:n]


def app_ready_s(env: dict[str, str], runs: int) -> list[float]:
    """Seconds from starting app.py until /healthz answers 200, per run."""
    times = []
    for _ in range(runs):
        port = free_port()
        started = time.perf_counter()
        app = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while time.perf_counter() - started < 120:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    time.sleep(0.05)
            times.append(time.perf_counter() - started)
        finally:
            app.terminate()
            app.wait(30)
    return times


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = machine()
    env = library_env(args.vectors)
    query = QUERIES[0]
    from searchcore.stores import snapshot

    snapshot_file = snapshot.folder_of(env["SEARCHCORE_MILVUS_URI"]) / f"{LIBRARY}.snap"
    whole = time_pair([sys.executable, "-m", "searchcore.cli", "search", query, "--json"], env, args.runs,
                      snapshot_file)
    phases = [json.loads(subprocess.run([sys.executable, "-c", PHASES, query], env=env, cwd=ROOT, check=True,
                                        capture_output=True, text=True).stdout) for _ in range(3)]
    median_phases = {name: statistics.median(p["phases"][name] for p in phases) for name in phases[0]["phases"]}
    app = app_ready_s(env, args.app_runs) if args.app_runs else []
    cli = whole["snapshot"]
    return {"machine": started, "vectors": args.vectors, "cli": whole, "phases_s": median_phases,
            "snapshot_used": all(p["snapshot"] for p in phases),
            "pymilvus_imported": any(p["pymilvus_imported"] for p in phases),
            "slowest_imports_s": slowest_imports(env),
            "torch_imported": any(p["torch_imported"] for p in phases), "app_ready_s": app,
            "goals": [{"goal": f"cold CLI search <= {GOAL_CLI_S} s", "value_s": cli["median_s"],
                       "met": cli["median_s"] <= GOAL_CLI_S},
                      *([{"goal": f"app ready <= {GOAL_APP_S} s", "value_s": statistics.median(app),
                          "met": statistics.median(app) <= GOAL_APP_S}] if app else [])]}


def report(result: dict[str, Any]) -> str:
    cli = result["cli"]
    lines = [f"Cold `searchcore search --json`, RN50, Lite library of {result['vectors']:,} vectors, "
             f"{cli['snapshot']['runs']} runs each, taking turns:",
             table(["answered from", "median s", "min s", "max s"],
                   [[path, f"{c['median_s']:.2f}", f"{c['min_s']:.2f}", f"{c['max_s']:.2f}"]
                    for path, c in cli.items()]),
             f"snapshot/Lite median: {cli['snapshot']['median_s'] / cli['lite']['median_s']:.2f}; "
             f"torch imported: {result['torch_imported']}; pymilvus imported: {result['pymilvus_imported']}", "",
             table(["phase (median of 3 fresh processes, snapshot used: "
                    f"{result['snapshot_used']})", "s"], [[k, f"{v:.3f}"] for k, v in result["phases_s"].items()]),
             "", table(["slowest import of searchcore.cli", "s"],
                       [[name, f"{t:.3f}"] for name, t in result["slowest_imports_s"]]),
             "", f"app.py until /healthz answers: {', '.join(f'{t:.2f}' for t in result['app_ready_s'])} s", "",
             table(["goal", "value (s)", "met"],
                   [[g["goal"], f"{g['value_s']:.2f}", g["met"]] for g in result["goals"]])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=31783)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--app-runs", type=int, default=3, help="app.py starts to time (0: none)")
    result = run(parser.parse_args(argv))
    print(report(result))
    print(f"\nwrote {write_result('cli', result)}")


if __name__ == "__main__":
    main()
