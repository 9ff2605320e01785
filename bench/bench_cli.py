"""Cold start: one `searchcore search "…" --json` from a fresh process, and the app until it serves.

RN50 (random weights) on the default CPU path with warm model caches (IR, compiled blobs, spec index), over a
Milvus Lite library of N synthetic 1024-d vectors and as many JPEGs in SQLite (bench_query's library). The
whole command is timed over repeated runs with Debian's `hyperfine` when it is installed (else a loop here),
and one more run reports where the time goes, phase by phase, from inside a fresh process.

Usage: python -m bench.bench_cli [--vectors 31783] [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
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
engine = build_engine(settings, exact_copy=False); mark("open stores")  # as `searchcore search` does, minus the overlap
encoder = engine.encoder; mark("load encoder")
vector = encoder.encode_texts([sys.argv[1]]); mark("encode text")
hits = engine.search_text(sys.argv[1], 10); mark("search (encode + vector search + captions)")
engine.close(); mark("close")
print(json.dumps({"phases": marks, "torch_imported": "torch" in sys.modules, "hits": len(hits)}))
"""


def library_env(vectors: int) -> dict[str, str]:
    """SEARCHCORE_* for the bench library, filled once (cached between runs)."""
    from searchcore.config import Settings
    from searchcore.models.encoder import load_encoder
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
    finally:
        store.close()
    names = ("model", "model_dir", "device", "precision", "milvus_uri", "db_url", "library")
    return {**os.environ, **{f"SEARCHCORE_{n.upper()}": str(getattr(settings, n)) for n in names}}


def time_command(command: list[str], env: dict[str, str], runs: int) -> dict[str, Any]:
    """Wall seconds of a whole command over repeated runs (hyperfine when installed)."""
    subprocess.run(command, env=env, check=True, capture_output=True)  # warm the OS page cache
    if shutil.which("hyperfine"):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            shell = " ".join(f"'{part}'" for part in command)
            subprocess.run(["hyperfine", "--warmup", "1", "--runs", str(runs), "--export-json", out.name,
                            "--style", "none", shell], env=env, check=True, capture_output=True)
            result = json.loads(Path(out.name).read_text())["results"][0]
        return {"tool": "hyperfine", "runs": runs, "median_s": result["median"], "mean_s": result["mean"],
                "min_s": result["min"], "max_s": result["max"]}
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return {"tool": "loop", "runs": runs, "median_s": statistics.median(times), "mean_s": statistics.mean(times),
            "min_s": min(times), "max_s": max(times)}


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
    whole = time_command([sys.executable, "-m", "searchcore.cli", "search", query, "--json"], env, args.runs)
    phases = [json.loads(subprocess.run([sys.executable, "-c", PHASES, query], env=env, cwd=ROOT, check=True,
                                        capture_output=True, text=True).stdout) for _ in range(3)]
    median_phases = {name: statistics.median(p["phases"][name] for p in phases) for name in phases[0]["phases"]}
    app = app_ready_s(env, 3)
    return {"machine": started, "vectors": args.vectors, "cli": whole, "phases_s": median_phases,
            "torch_imported": any(p["torch_imported"] for p in phases), "app_ready_s": app,
            "goals": [{"goal": f"cold CLI search <= {GOAL_CLI_S} s", "value_s": whole["median_s"],
                       "met": whole["median_s"] <= GOAL_CLI_S},
                      {"goal": f"app ready <= {GOAL_APP_S} s", "value_s": statistics.median(app),
                       "met": statistics.median(app) <= GOAL_APP_S}]}


def report(result: dict[str, Any]) -> str:
    cli = result["cli"]
    lines = [f"Cold `searchcore search --json`, RN50, Lite library of {result['vectors']:,} vectors "
             f"({cli['tool']}, {cli['runs']} runs): median {cli['median_s']:.2f} s "
             f"(min {cli['min_s']:.2f}, max {cli['max_s']:.2f}); torch imported: {result['torch_imported']}", "",
             table(["phase (median of 3 fresh processes)", "s"],
                   [[k, f"{v:.3f}"] for k, v in result["phases_s"].items()]),
             "", f"app.py until /healthz answers: {', '.join(f'{t:.2f}' for t in result['app_ready_s'])} s", "",
             table(["goal", "value (s)", "met"],
                   [[g["goal"], f"{g['value_s']:.2f}", g["met"]] for g in result["goals"]])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=31783)
    parser.add_argument("--runs", type=int, default=10)
    result = run(parser.parse_args(argv))
    print(report(result))
    print(f"\nwrote {write_result('cli', result)}")


if __name__ == "__main__":
    main()
