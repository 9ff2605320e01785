"""Load test of the running app's JSON API: N clients search for a fixed time, then again while an ingest runs.

Each client sends its own queries (coloured-shape captions) and checks every answer against the answer that
query got alone before the load started: the same ids in the same order, so a response meant for another
client (a mix-up) is caught. Reports throughput, latency percentiles, errors, mix-ups and the server's RSS.

    python -m bench.loadtest --clients 8 --seconds 60      # starts `python app.py` itself (tiny model, offline)
    python -m bench.loadtest --url http://127.0.0.1:7860 --pid PID --library demo   # an app already running

Writes bench/results/loadtest_{clients}.json. `make loadtest` runs 8 clients, then 32, for 60 s each.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/loadtest.py` as well as `python -m bench.loadtest`
    sys.path.insert(0, str(ROOT))

from demo.shapes import CLASSES, caption  # noqa: E402
from tests.support import App  # noqa: E402

QUERIES = [caption(*c) for c in CLASSES]
TOP_K = 10


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def search(http: httpx.Client, text: str, library: str) -> list[tuple[int, float]]:
    """One search; (image id, score) pairs, best first. Raises on any non-200 answer."""
    response = http.post("/api/search", json={"text": text, "top_k": TOP_K, "library": library})
    response.raise_for_status()
    return [(hit["image_id"], hit["score"]) for hit in response.json()]


def same_answer(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> bool:
    """Same ids in the same order; ids whose scores tie within 1e-4 may swap places."""
    if [i for i, _ in got] == [i for i, _ in expected]:
        return True
    return (sorted(i for i, _ in got) == sorted(i for i, _ in expected)
            and all(abs(a - b) < 1e-4 for (_, a), (_, b) in zip(got, expected)))


@dataclass
class Phase:
    """What the clients saw during one phase."""

    name: str
    clients: int
    seconds: float = 0.0
    requests: int = 0
    errors: int = 0
    mixups: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    first_problems: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms) or [float("nan")]

        def pct(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 1)

        data = {k: v for k, v in asdict(self).items() if k != "latencies_ms"}
        data.update(seconds=round(self.seconds, 1), throughput_rps=round(self.requests / max(self.seconds, 1e-9), 1),
                    p50_ms=pct(50), p95_ms=pct(95), p99_ms=pct(99),
                    mean_ms=round(statistics.fmean(ordered), 1) if self.latencies_ms else None)
        return data


def run_clients(url: str, library: str, expected: dict[str, list[tuple[int, float]]], clients: int,
                seconds: float | None, stop: threading.Event | None = None, name: str = "search") -> Phase:
    """`clients` threads, each with its own connection and queries, until `seconds` pass or `stop` is set."""
    phase = Phase(name, clients)
    lock = threading.Lock()
    stop = stop or threading.Event()
    start = threading.Barrier(clients + 1)
    queries = list(expected)

    def client(number: int) -> None:
        mine = queries[number % len(queries)::clients] or [queries[number % len(queries)]]
        latencies, errors, mixups, problems = [], 0, 0, []
        with httpx.Client(base_url=url, timeout=60) as http:
            start.wait()
            sent = 0
            while not stop.is_set():
                text = mine[sent % len(mine)]
                sent += 1
                began = time.perf_counter()
                try:
                    got = search(http, text, library)
                except Exception as exc:  # noqa: BLE001 - any failure counts; the load goes on
                    errors += 1
                    problems.append(f"client {number} {text}: {type(exc).__name__}: {exc}"[:300])
                    continue
                latencies.append((time.perf_counter() - began) * 1000)
                if not same_answer(got, expected[text]):
                    mixups += 1
                    problems.append(f"client {number} {text}: got {got[:3]}, expected {expected[text][:3]}")
        with lock:
            phase.requests += len(latencies) + errors
            phase.errors += errors
            phase.mixups += mixups
            phase.latencies_ms += latencies
            phase.first_problems += problems[:3]

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    if seconds is not None:
        stop.wait(seconds)
        stop.set()
    for t in threads:
        t.join(timeout=120)
    phase.seconds = time.perf_counter() - began
    phase.first_problems = phase.first_problems[:10]
    return phase


def expected_answers(url: str, library: str, queries: Sequence[str] = QUERIES) -> dict[str, list[tuple[int, float]]]:
    """Each query's answer alone, before any load: what every later answer must equal."""
    with httpx.Client(base_url=url, timeout=120) as http:
        return {q: search(http, q, library) for q in queries}


def load_test(url: str, pid: int | None, *, library: str, clients: int, seconds: float,
              ingest: dict[str, Any] | None = None, warmup: float = 2.0) -> dict[str, Any]:
    """Steady search load, then the same load while POST /api/ingest runs; returns the figures."""
    expected = expected_answers(url, library)
    run_clients(url, library, expected, min(clients, 4), warmup, name="warmup")
    result: dict[str, Any] = {"url": url, "library": library, "clients": clients, "top_k": TOP_K,
                              "queries": len(expected), "rss_mb_start": round(rss_mb(pid), 1) if pid else None}
    result["steady"] = run_clients(url, library, expected, clients, seconds, name="steady").summary()
    result["rss_mb_after_steady"] = round(rss_mb(pid), 1) if pid else None
    if ingest is not None:
        stop = threading.Event()
        report: dict[str, Any] = {}

        def run_ingest() -> None:
            began = time.perf_counter()
            try:
                with httpx.Client(base_url=url, timeout=None) as http:
                    response = http.post("/api/ingest", json=ingest)
                    report.update(status=response.status_code, body=response.json())
            except Exception as exc:  # noqa: BLE001 - reported, never raised from the thread
                report.update(status=None, body=f"{type(exc).__name__}: {exc}")
            finally:
                report["seconds"] = round(time.perf_counter() - began, 1)
                stop.set()

        writer = threading.Thread(target=run_ingest, daemon=True)
        writer.start()
        during = run_clients(url, library, expected, clients, None, stop, name="during_ingest")
        writer.join()
        result["during_ingest"] = during.summary()
        body = report.get("body")
        result["ingest"] = {"status": report.get("status"), "seconds": report.get("seconds"),
                            **({k: body[k] for k in ("library", "added", "present")} if isinstance(body, dict)
                               else {"error": body}),
                            **({"bad": len(body["bad"])} if isinstance(body, dict) else {})}
    result["rss_mb_end"] = round(rss_mb(pid), 1) if pid else None
    return result


@contextlib.contextmanager
def demo_app(work: Path, *, app_args: Sequence[str] = (), env: dict[str, str] | None = None,
             library: str = "load", images: int = 90, ingest_images: int = 180) -> Iterator[tuple[App, dict[str, Any]]]:
    """The app over fresh embedded stores and the tiny model, with `images` shapes ingested through the API;
    yields the app and the JSON body of a second ingest (another split) for the load test to run."""
    from demo.sample_data import write_dataset

    data = work / "dataset"
    write_dataset(data, "valid", images, seed=1, first_id=1000, lmdb=False)
    write_dataset(data, "train", ingest_images, seed=2, first_id=100000, lmdb=False)
    settings = {"SEARCHCORE_MODEL": str(ROOT / "demo" / "tiny_clip.pt"), "SEARCHCORE_LIBRARY": library,
                "SEARCHCORE_MILVUS_URI": str(work / "milvus.db"), "SEARCHCORE_DB_URL": str(work / "images.db"),
                **(env or {})}
    with App(settings, app_args, log=work / "app.log") as app:
        with httpx.Client(base_url=app.url, timeout=None) as http:
            response = http.post("/api/ingest", json={"path": str(data), "split": "valid", "library": library})
            response.raise_for_status()
        yield app, {"path": str(data), "split": "train", "library": f"{library}_ingest"}


def print_report(result: dict[str, Any]) -> None:
    rows = [result[k] for k in ("steady", "during_ingest") if k in result]
    headers = ["phase", "clients", "seconds", "requests", "throughput_rps", "p50_ms", "p95_ms", "p99_ms",
               "errors", "mixups"]
    print(" | ".join(headers))
    for row in rows:
        print(" | ".join(str(row[h] if h != "phase" else row["name"]) for h in headers))
    print(f"server RSS: {result['rss_mb_start']} MB at start, {result['rss_mb_after_steady']} MB after the steady "
          f"phase, {result['rss_mb_end']} MB at the end")
    if "ingest" in result:
        print(f"ingest during the load: {result['ingest']}")
    for row in rows:
        for problem in row["first_problems"]:
            print(f"  {row['name']}: {problem}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--url", help="an app already running (default: start app.py with the tiny model)")
    parser.add_argument("--pid", type=int, help="with --url: the app's process id, for its memory")
    parser.add_argument("--library", default="load", help="with --url: the library to search")
    parser.add_argument("--ingest", help="with --url: a dataset folder to ingest (split train) during the load")
    parser.add_argument("--no-ingest", action="store_true", help="skip the search-while-ingesting phase")
    parser.add_argument("--images", type=int, default=90, help="images in the searched library (own app)")
    parser.add_argument("--ingest-images", type=int, default=1800, help="images ingested during the load (own app)")
    parser.add_argument("--app-args", default="", help="extra flags for app.py, e.g. '--backend torch'")
    parser.add_argument("--out", help="result file name under bench/results (default loadtest_{clients})")
    args = parser.parse_args(argv)

    from bench._common import machine, write_result

    load = machine()["load_avg_1m_start"]
    if args.url:
        ingest = None if args.no_ingest or not args.ingest else {
            "path": args.ingest, "split": "train", "library": f"{args.library}_ingest"}
        result = load_test(args.url, args.pid, library=args.library, clients=args.clients, seconds=args.seconds,
                           ingest=ingest)
    else:
        with tempfile.TemporaryDirectory(prefix="searchcore-load-") as tmp, \
                demo_app(Path(tmp), app_args=args.app_args.split(), images=args.images,
                         ingest_images=args.ingest_images) as (app, ingest):
            result = load_test(app.url, app.pid, library="load", clients=args.clients, seconds=args.seconds,
                               ingest=None if args.no_ingest else ingest)
            result["app"] = {"model": "demo/tiny_clip.pt", "stores": "Milvus Lite + SQLite",
                             "args": args.app_args, "alive_at_end": app.alive()}
    result["load_avg_1m_start"] = load
    path = write_result(args.out or f"loadtest_{args.clients}", {"benchmark": "loadtest", **result})
    print_report(result)
    print(f"wrote {path.relative_to(ROOT)}")
    bad = sum(result[k]["errors"] + result[k]["mixups"] for k in ("steady", "during_ingest") if k in result)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
