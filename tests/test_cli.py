"""The `searchcore` command as a user runs it: JSON contracts, exit codes, locks and interrupted ingests."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo.sample_data import image_classes, write_dataset
from searchcore.config import Settings
from tests.support import run_cli


def test_ingest_then_search_returns_red_circles_first(env: dict[str, str], dataset: Path) -> None:
    done = run_cli("ingest", str(dataset), "--split", "valid", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {k: report[k] for k in ("library", "added", "present", "bad")} == {
        "library": "default", "added": 90, "present": 0, "bad": []}

    found = run_cli("search", "红色的圆形", "--top-k", "5", "--json", env=env)
    assert found.returncode == 0, found.stderr
    results = json.loads(found.stdout)
    assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    assert set(results[0]) == {"rank", "image_id", "score", "captions", "path", "taken", "text",
                               "similarity", "keyword_score", "media", "video", "text_match", "similar"}
    classes = image_classes(dataset, "valid")
    assert all(classes[r["image_id"]] == ("红色", "圆形") for r in results)

    info = json.loads(run_cli("info", "--json", env=env).stdout)
    assert {k: info[k] for k in ("library", "count", "dim", "vector_backend", "image_backend")} == {
        "library": "default", "count": 90, "dim": 64, "vector_backend": "milvus-lite", "image_backend": "sqlite"}
    assert info["model"].startswith("tiny_clip@")

    again = json.loads(run_cli("ingest", str(dataset), "--split", "valid", "--json", env=env).stdout)
    assert (again["added"], again["present"]) == (0, 90)
    assert json.loads(run_cli("info", "--json", env=env).stdout)["count"] == 90


def test_search_by_image_file(env: dict[str, str], dataset: Path, tmp_path: Path) -> None:
    import random

    from demo.shapes import draw

    assert run_cli("ingest", str(dataset), "--split", "train", env=env).returncode == 0
    query = tmp_path / "query.png"
    draw("绿色", "正方形", random.Random(9)).save(query)
    found = run_cli("search", "--image", str(query), "--top-k", "3", "--json", env=env)
    assert found.returncode == 0, found.stderr
    top = json.loads(found.stdout)[0]
    assert image_classes(dataset, "train")[top["image_id"]] == ("绿色", "正方形")


@pytest.mark.parametrize("args, code, message", [
    (["search", ""], 1, "query is empty"),
    (["search", "红色", "--top-k", "abc"], 1, "top_k must be"),
    (["search", "红色", "--top-k", "1001"], 1, "from 1 to 1000"),
    (["search", "红色", "--library", "../x"], 1, "invalid library name"),
    (["ingest", "/no/such/folder"], 1, "does not exist"),
    (["info", "--batch-size", "zero"], 2, "invalid int value"),
    (["search"], 2, "either a text query or --image"),
    (["frobnicate"], 2, "invalid choice"),
])
def test_exit_codes_and_messages(env: dict[str, str], args: list[str], code: int, message: str) -> None:
    done = run_cli(*args, env=env)
    assert done.returncode == code
    assert message in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_drop_removes_the_library(env: dict[str, str], dataset: Path) -> None:
    run_cli("ingest", str(dataset), "--split", "train", "--library", "gone", env=env)
    assert run_cli("drop", "--library", "gone", env=env).returncode == 0
    info = json.loads(run_cli("info", "--library", "gone", "--json", env=env).stdout)
    assert (info["count"], info["images"], info["model"]) == (0, 0, None)
    again = run_cli("drop", "--library", "gone", env=env)
    assert again.returncode == 1 and "does not exist" in again.stderr


def test_second_process_on_a_lite_file_gets_a_clear_message(env: dict[str, str], settings: Settings) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from searchcore.stores.vectors import MilvusVectorStore; "
                               f"MilvusVectorStore({settings.milvus_uri!r}); print('ready', flush=True); "
                               "time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        done = run_cli("info", "--json", env=env)
        assert done.returncode == 1
        assert "open in another process; stop it or use a Milvus server URI" in done.stderr
        assert "Traceback" not in done.stderr
    finally:
        holder.kill()
        holder.wait()


def test_killed_ingest_completes_when_run_again(env: dict[str, str], settings: Settings, tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "big", "train", 480, seed=4, lmdb=False)
    env = {**env, "SEARCHCORE_BATCH_SIZE": "4"}
    proc = subprocess.Popen([sys.executable, "-m", "searchcore.cli", "ingest", str(root), "--split", "train"],
                            env={**__import__("os").environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    db = Path(settings.db_url)
    deadline = time.monotonic() + 120
    stored = 0
    while time.monotonic() < deadline and proc.poll() is None:
        stored = _count(db)
        if stored >= 40:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < stored < 480, "the ingest should have been killed midway"

    done = run_cli("ingest", str(root), "--split", "train", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["added"] + report["present"] == 480 and not report["bad"]
    check = run_cli("check", "--json", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    result = json.loads(check.stdout)
    assert result["consistent"] and result["images"] == result["vectors"] == 480


def _count(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM searchcore_images").fetchone()[0])
    except sqlite3.Error:
        return 0
