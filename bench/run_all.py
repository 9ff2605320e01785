"""`make bench`: every CPU benchmark, each in its own process, then one Markdown summary of this run.

Runs bench_openvino_encoder, bench_ingest and bench_query (about 10 minutes
on 2 cores), writes bench/results/*.json and bench/results/latest.md (the
tables to copy into docs/PERFORMANCE.md). bench_scale is opt-in
(`make bench-scale`) and the GPU benchmark is bench/gpu_bench.sh.

Usage: python -m bench.run_all [--only ingest,query] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench._common import RESULTS, ROOT, machine

# name -> (module, arguments, arguments with --quick)
BENCHMARKS = {
    "openvino_encoder": ("bench.bench_openvino_encoder", [], ["--images", "32", "--torch-fp32-images", "8"]),
    "ingest": ("bench.bench_ingest", ["--images", "256"], ["--images", "32", "--original-images", "8"]),
    "query": ("bench.bench_query", ["--profile"], ["--vectors", "3000", "--runs", "10", "--no-server"]),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that everything runs")
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(BENCHMARKS)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    summary = [f"# Benchmark run {machine()['date']}", "",
               f"Machine: {machine()['cpu']}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start. "
               f"Command: `python -m bench.run_all {' '.join(argv if argv is not None else sys.argv[1:])}`.", ""]
    failed = []
    for name in chosen:
        module, full, quick = BENCHMARKS[name]
        if not (ROOT / Path(*module.split("."))).with_suffix(".py").is_file():
            print(f"skipping {name}: {module} is not in this checkout")
            continue
        command = [sys.executable, "-m", module, *(quick if args.quick else full)]
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        sys.stdout.write(done.stdout)
        if done.returncode != 0:
            sys.stdout.write(done.stderr[-4000:])
            failed.append(name)
        table = done.stdout.split("\nwrote ")[0].strip()
        summary += [f"## {name} ({seconds:.0f} s, exit {done.returncode})", "",
                    f"`python -m {module} {' '.join(quick if args.quick else full)}`", "", "```", table, "```", ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.md").write_text("\n".join(summary) + "\n", encoding="utf-8")
    index = {p.stem: _date(json.loads(p.read_text())) for p in sorted(RESULTS.glob("*.json"))}
    print(f"\nwrote {RESULTS / 'latest.md'}; results: {index}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _date(result: object) -> str | None:
    """When a result file was written, where it says (an older file's "machine" is a line of text)."""
    machine_ = result.get("machine") if isinstance(result, dict) else None
    return machine_.get("date") if isinstance(machine_, dict) else None


if __name__ == "__main__":
    sys.exit(main())
