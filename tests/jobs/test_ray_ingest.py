"""Distributed ingest on Ray Data builds the library `searchcore ingest` builds (Milvus server + MariaDB)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray

from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.errors import ConfigError
from searchcore.jobs.distributed import ingest_ray
from searchcore.models.encoder import Encoder
from tests.support import run_cli, settings_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A single-node Ray on this machine's two cores, started once for the module."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_ingest_refuses_a_milvus_lite_file(settings: Settings, dataset: Path) -> None:
    with pytest.raises(ConfigError, match="Milvus server"):
        ingest_ray(settings, dataset, split="valid")


# Runs before the module's own Ray starts: the command starts a Ray of its own.
def test_ingest_ray_command_bulk_inserts_through_files(server_settings: Settings, dataset: Path,
                                                        tmp_path: Path, torch_encoder: Encoder) -> None:
    env = settings_env(server_settings)
    bulk = tmp_path / "bulk"

    done = run_cli("ingest-ray", str(dataset), "--split", "train", "--num-workers", "1", "--bulk-dir", str(bulk),
                   "--json", env=env)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["added"] == 36
    engine = Engine(server_settings, encoder=torch_encoder)
    try:
        assert engine.info().count == 36 and engine.info().images == 36
        assert len(engine.search_text("红色的圆形", top_k=5)) == 5
    finally:
        engine.drop()
        engine.close()
    assert not any(bulk.rglob("*.npy")), "imported files are deleted"


# Runs before the module's own Ray starts: ingest_ray starts the local Ray itself only when none is running.
# Both messages were seen in CI on a busy 2-core machine.
@pytest.mark.parametrize("timeout", [
    RuntimeError("The current node timed out during startup. This could happen because some of the raylet "
                 "failed to startup or the GCS has become overloaded."),
    RuntimeError("Timed out waiting for file /tmp/ray/session_x/gcs_server_port_a236432d. If `ray status` ..."),
], ids=["node-startup", "gcs-port-file"])
def test_ray_ingest_retries_a_local_ray_start_that_timed_out(server_settings: Settings, dataset: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             torch_encoder: Encoder, timeout: Exception) -> None:
    """On a busy machine the raylet can miss Ray's start-up deadline (seen once in CI). Ray's Node raises
    before ray.init records it, so ray.shutdown() cannot stop the processes it had started: the retry must."""
    real_init = ray.init
    left_behind: list[subprocess.Popen[bytes]] = []
    alive_at_retry: list[bool] = []

    def init_timing_out_once(*args: Any, **kwargs: Any) -> Any:
        if not left_behind:  # a half-started node: its processes run on, and the start times out
            left_behind.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]))
            raise timeout
        alive_at_retry.append(left_behind[0].poll() is None)
        return real_init(*args, **kwargs)

    monkeypatch.setattr(ray, "init", init_timing_out_once)
    assert not ray.is_initialized()
    try:
        report = ingest_ray(server_settings, dataset, split="train", num_workers=1)

        assert (report.added, report.bad) == (36, [])
        assert alive_at_retry == [False], "the half-started node is stopped before the one retry"
        assert not ray.is_initialized(), "the Ray started here is shut down afterwards"
    finally:
        for process in left_behind:
            process.kill()
            process.wait()
        engine = Engine(server_settings, encoder=torch_encoder)
        engine.drop()
        engine.close()


def test_ray_ingest_builds_the_same_library_as_ingest(local_ray: None, server_settings: Settings, dataset: Path,
                                                      torch_encoder: Encoder) -> None:
    plain, distributed = server_settings.library, server_settings.library + "_ray"
    engine = Engine(server_settings, encoder=torch_encoder)
    try:
        engine.ingest(dataset, split="valid")
        report = ingest_ray(server_settings, dataset, split="valid", library=distributed, num_workers=1)
        again = ingest_ray(server_settings, dataset, split="valid", library=distributed, num_workers=1)

        assert (report.added, report.present, report.bad) == (90, 0, [])
        assert (again.added, again.present) == (0, 90)
        ids = sorted(engine.vectors.ids(plain))
        assert sorted(engine.vectors.ids(distributed)) == ids and len(ids) == 90
        expected, got = engine.vectors.vectors(plain, ids), engine.vectors.vectors(distributed, ids)
        assert min(float(np.dot(expected[i], got[i])) for i in ids) >= 0.9999
        images, ray_images = engine.images.get_many(plain, ids), engine.images.get_many(distributed, ids)
        assert all((images[i].sha256, images[i].captions) == (ray_images[i].sha256, ray_images[i].captions)
                   for i in ids)
        assert engine.info(distributed).model == engine.info(plain).model
    finally:
        for library in (plain, distributed):
            engine.drop(library)
        engine.close()
