"""Prometheus metrics shared by the Gradio UI and the JSON API (served at GET /metrics)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from searchcore.errors import BackendUnavailableError
from searchcore.indexing.report import IngestReport

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SEARCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Search latency, ingest counts and backend failures, in a registry of their own."""

    def __init__(self) -> None:
        # One registry per app rather than the global one, so several apps can live in one process (tests).
        self.registry = CollectorRegistry()
        self.search_seconds = Histogram("searchcore_search_seconds", "Search latency in seconds, by query kind",
                                        ["kind"], buckets=SEARCH_BUCKETS, registry=self.registry)
        self.ingests = Counter("searchcore_ingests", "Ingest runs that finished", registry=self.registry)
        self.ingested_images = Counter("searchcore_ingested_images", "Records seen by ingest, by outcome",
                                       ["outcome"], registry=self.registry)
        self.backend_errors = Counter("searchcore_backend_errors", "Calls that failed because Milvus or the "
                                      "image database could not be reached", ["operation"], registry=self.registry)

    @contextmanager
    def backend(self, operation: str) -> Iterator[None]:
        """Count a BackendUnavailableError raised inside the block (and let it go on)."""
        try:
            yield
        except BackendUnavailableError:
            self.backend_errors.labels(operation).inc()
            raise

    @contextmanager
    def search(self, kind: str) -> Iterator[None]:
        """Time a search of this kind (text, image, similar); failed searches count as errors only."""
        started = time.perf_counter()
        with self.backend("search"):
            yield
        self.search_seconds.labels(kind).observe(time.perf_counter() - started)

    def ingested(self, report: IngestReport) -> None:
        """Add one finished ingest to the counters."""
        self.ingests.inc()
        self.ingested_images.labels("added").inc(report.added)
        self.ingested_images.labels("present").inc(report.present)
        self.ingested_images.labels("bad").inc(len(report.bad))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
