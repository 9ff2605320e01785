"""A killed ingest leaves stores that a re-run completes, and `check --repair` mends what a crash or a
hand edit left behind. Kills are real SIGKILLs at fixed points (tests/ingest_killed_at.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from demo.sample_data import write_dataset
from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.models.encoder import Encoder
from tests.support import run_cli, settings_env

IMAGES, BATCH = 32, 4
KILLED_INGEST = Path(__file__).parents[1] / "ingest_killed_at.py"


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("crash"), "train", IMAGES, seed=7, lmdb=False)


def ingest_killed_at(point: str, env: dict[str, str], split: Path, *options: str) -> None:
    """Run the ingest with a SIGKILL at point (tests/ingest_killed_at.py) and check it died of it."""
    proc = subprocess.run([sys.executable, str(KILLED_INGEST), point, str(split), "--split", "train", *options],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, f"expected a SIGKILL at {point}: {proc.returncode} {proc.stderr[-2000:]}"


def stored_ids(settings: Settings) -> tuple[list[int], list[int]]:
    engine = Engine(settings)
    try:
        return list(engine.images.ids(settings.library)), list(engine.vectors.ids(settings.library))
    finally:
        engine.close()


@pytest.mark.parametrize("point, images_after_kill", [
    ("batch:3", 2 * BATCH),          # third batch encoded, nothing of it written
    ("after_images:3", 3 * BATCH),   # third batch's images written, its vectors not
    ("flush:1", IMAGES),             # everything written, the final flush not done
])
def test_ingest_killed_at_any_point_completes_when_run_again(settings: Settings, torch_encoder: Encoder,
                                                             split: Path, point: str, images_after_kill: int) -> None:
    env = {**settings_env(settings), "SEARCHCORE_BATCH_SIZE": str(BATCH), "SEARCHCORE_WORKERS": "1"}
    ingest_killed_at(point, env, split)
    images, vectors = stored_ids(settings)
    assert len(images) == images_after_kill
    assert set(vectors) <= set(images), "a vector is never written before its image"

    done = run_cli("ingest", str(split), "--split", "train", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["added"] + report["present"] == IMAGES and report["bad"] == []
    assert report["added"] == IMAGES - len(vectors), "only what had no vector is encoded again"

    engine = Engine(settings, encoder=torch_encoder)
    try:
        images, vectors = list(engine.images.ids("default")), list(engine.vectors.ids("default"))
        assert len(images) == len(set(images)) == IMAGES and engine.vectors.count("default") == IMAGES
        assert sorted(images) == sorted(vectors)
        assert engine.check().consistent
        found = engine.search_text("红色的圆形", 100)
        assert len(found) == IMAGES and {r.image_id for r in found} == set(images)
    finally:
        engine.close()


def test_ingest_killed_while_reader_processes_run_completes_when_run_again(settings: Settings, split: Path) -> None:
    env = {**settings_env(settings), "SEARCHCORE_BATCH_SIZE": str(BATCH), "SEARCHCORE_WORKERS": "2"}
    ingest_killed_at("after_images:3", env, split, "--parallel-reader")
    images, vectors = stored_ids(settings)
    assert len(images) == 3 * BATCH and set(vectors) <= set(images), "a vector is never written before its image"

    done = run_cli("ingest", str(split), "--split", "train", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["added"] == IMAGES - len(vectors) and report["present"] == len(vectors) and report["bad"] == []
    images, vectors = stored_ids(settings)
    assert sorted(images) == sorted(vectors) and len(set(images)) == IMAGES


def test_kill_between_image_and_vector_writes_on_mariadb(settings: Settings, split: Path, mariadb_url: str) -> None:
    settings = settings.replace(db_url=mariadb_url, library="crash_mariadb")
    env = {**settings_env(settings), "SEARCHCORE_BATCH_SIZE": str(BATCH)}
    ingest_killed_at("after_images:2", env, split)
    images, vectors = stored_ids(settings)
    assert len(images) == 2 * BATCH and set(vectors) < set(images)
    assert run_cli("check", env=env).returncode == 1, "check sees the images without vectors"
    assert run_cli("ingest", str(split), "--split", "train", env=env).returncode == 0
    images, vectors = stored_ids(settings)
    assert sorted(images) == sorted(vectors) and len(images) == IMAGES


def test_check_reports_a_mismatch_and_repair_mends_it(settings: Settings, torch_encoder: Encoder,
                                                     split: Path) -> None:
    engine = Engine(settings, encoder=torch_encoder)
    try:
        engine.ingest(split, split="train")
        ids = sorted(engine.images.ids("default"))
        before = engine.vectors.vectors("default", ids)
        lost_vectors, lost_images = ids[:3], ids[-2:]
        engine.vectors.delete("default", lost_vectors)
        engine.images.delete_many("default", lost_images)
    finally:
        engine.close()
    env = settings_env(settings)

    check = run_cli("check", env=env)
    assert check.returncode == 1, check.stderr
    assert "3 images without a vector, 2 vectors without an image" in check.stdout

    repair = run_cli("check", "--repair", "--json", env=env)
    assert repair.returncode == 0, repair.stdout + repair.stderr
    report = json.loads(repair.stdout)
    assert (report["missing_vectors"], report["orphan_vectors"]) == (lost_vectors, lost_images)
    assert report["repaired"]

    images, vectors = stored_ids(settings)
    assert sorted(images) == sorted(vectors) == sorted(set(ids) - set(lost_images))
    engine = Engine(settings, encoder=torch_encoder)
    try:
        assert engine.check().consistent
        again = engine.vectors.vectors("default", lost_vectors)
        for image_id in lost_vectors:  # re-encoded from the stored image: the same vector as before
            assert float(np.dot(again[image_id], before[image_id])) > 0.999
        assert {r.image_id for r in engine.search_text("红色的圆形", 100)} == set(images)
    finally:
        engine.close()
