"""A short load test of the served app (bench/loadtest.py, 4 clients for 5 s): every client gets its own
answers, none fails, and searches keep answering while an ingest runs in the same app."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.loadtest import demo_app, load_test


def test_concurrent_searches_get_their_own_answers_and_keep_answering_during_an_ingest(
        tmp_path: Path, model_cache: Path, tiny_model: Path) -> None:
    args = ["--backend", "torch", "--precision", "fp32", "--model-dir", str(model_cache)]
    with demo_app(tmp_path, app_args=args, images=36, ingest_images=360) as (app, ingest):
        result = load_test(app.url, app.pid, library="load", clients=4, seconds=5, ingest=ingest, warmup=1)
        assert app.alive()
    steady, during = result["steady"], result["during_ingest"]
    for phase in (steady, during):
        assert phase["requests"] > 0 and phase["errors"] == 0 and phase["mixups"] == 0, phase
    assert result["ingest"]["status"] == 200 and result["ingest"]["added"] == 360, result["ingest"]
    assert result["rss_mb_start"] > 0 and result["rss_mb_end"] > 0


def test_an_app_that_does_not_start_says_why(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"app.py did not start \(exit 2\)") as failed, \
            demo_app(tmp_path, app_args=["--no-such-flag"], images=6, ingest_images=6):
        pass
    assert "unrecognized arguments: --no-such-flag" in str(failed.value)
