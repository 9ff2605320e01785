"""Shared fixtures: the tiny real model, Chinese-CLIP-format datasets, and real backends.

Every backend is real: Milvus Lite and SQLite in a temporary folder, a
database of its own on the MariaDB at 127.0.0.1:3306, and a Milvus server
started from the PyPI `milvus` package on free ports.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from searchcore.config import Settings
from searchcore.encoder import Encoder, load_encoder
from searchcore.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = ROOT / "demo" / "tiny_clip.pt"
MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder shared by the session, so OpenVINO converts the tiny model once."""
    return tmp_path_factory.mktemp("model_cache")


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The committed tiny Chinese-CLIP checkpoint (trained by demo/train_tiny_model.py)."""
    assert TINY_MODEL.is_file(), "demo/tiny_clip.pt is missing; run `python demo/train_tiny_model.py`"
    return TINY_MODEL


def tiny_settings(tmp: Path, model_cache: Path, **changes: object) -> Settings:
    """Settings for the tiny model with embedded stores under tmp."""
    base = Settings(model=str(TINY_MODEL), model_dir=str(model_cache), milvus_uri=str(tmp / "milvus.db"),
                    db_url=str(tmp / "images.db"), device="cpu")
    return base.replace(**changes)


@pytest.fixture(scope="session")
def torch_encoder(tiny_model: Path, model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    """The tiny model on the PyTorch reference path in fp32."""
    settings = tiny_settings(tmp_path_factory.mktemp("enc"), model_cache, backend="torch", precision="fp32")
    return load_encoder(settings)


@pytest.fixture(scope="session")
def ov_encoder(tiny_model: Path, model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    """The tiny model on the default CPU path (OpenVINO, bf16 where the CPU has it)."""
    settings = tiny_settings(tmp_path_factory.mktemp("enc"), model_cache, backend="openvino", precision="auto")
    return load_encoder(settings)


@pytest.fixture
def settings(tmp_path: Path, model_cache: Path, tiny_model: Path) -> Settings:
    """Tiny-model settings with fresh embedded stores."""
    return tiny_settings(tmp_path, model_cache, backend="torch", precision="fp32")


@pytest.fixture
def engine(settings: Settings, torch_encoder: Encoder) -> Iterator[Engine]:
    """An engine over the tiny model, Milvus Lite and SQLite in a temporary folder."""
    eng = Engine(settings, encoder=torch_encoder)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Chinese-CLIP-format dataset: valid (90 images) and train (36) splits, tsv + jsonl + LMDB."""
    from demo.sample_data import write_dataset

    root = tmp_path_factory.mktemp("dataset")
    write_dataset(root, "valid", 90, seed=1, first_id=1000)
    write_dataset(root, "train", 36, seed=2, first_id=5000)
    return root


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A database of its own on the real MariaDB server, dropped afterwards."""
    import pymysql

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        conn = pymysql.connect(**MARIADB, autocommit=True)
    except pymysql.err.OperationalError as exc:
        pytest.fail(f"MariaDB is not running on 127.0.0.1:3306 ({exc}); start it as .ci/run does")
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """A fresh database on the real MariaDB server for the session."""
    with scratch_database("searchcore_test") as name:
        yield f"mysql://root@127.0.0.1:3306/{name}"


@pytest.fixture
def doomed_database() -> Iterator[str]:
    """A MariaDB database of this test's own, which the test may destroy."""
    with scratch_database("searchcore_doomed") as name:
        yield name


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Milvus standalone server (PyPI `milvus` 2.3.5) on free ports; yields its URI."""
    from milvus import MilvusServer

    base = tmp_path_factory.mktemp("milvus_server")
    server = MilvusServer()
    server.set_base_dir(str(base))
    # The package's embedded etcd always takes 2379/2380; give it free ports so servers can run side by side.
    client, peer = free_port(), free_port()
    config = base / "embedEtcd.yaml"
    config.write_text(f"listen-client-urls: http://127.0.0.1:{client}\nadvertise-client-urls: http://127.0.0.1:{client}\n"
                      f"listen-peer-urls: http://127.0.0.1:{peer}\ninitial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
                      f"initial-cluster: default=http://127.0.0.1:{peer}\n")
    previous = os.environ.get("ETCD_CONFIG_PATH")
    os.environ["ETCD_CONFIG_PATH"] = str(config)
    try:
        server.start()
    finally:
        if previous is None:
            os.environ.pop("ETCD_CONFIG_PATH", None)
        else:
            os.environ["ETCD_CONFIG_PATH"] = previous
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


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the `searchcore` command in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "searchcore.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)


def settings_env(settings: Settings) -> dict[str, str]:
    """The SEARCHCORE_* variables that reproduce these settings in a subprocess."""
    from dataclasses import fields

    return {f"SEARCHCORE_{f.name.upper()}": str(getattr(settings, f.name)) for f in fields(settings)
            if getattr(settings, f.name) is not None}
