"""Shared fixtures: the tiny real model, Chinese-CLIP-format datasets, and real backends.

Every backend is real: Milvus Lite and SQLite in a temporary folder, a
database of its own on the MariaDB at 127.0.0.1:3306, and a Milvus server
started from the PyPI `milvus` package on free ports. The helpers behind them
are in tests/support.py; tests import them from there, never from this file,
which pytest alone imports.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.models.encoder import Encoder, load_encoder
from tests.support import TINY_MODEL, PrivateMilvus, scratch_database, tiny_settings


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder shared by the session, so OpenVINO converts the tiny model once."""
    return tmp_path_factory.mktemp("model_cache")


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The committed tiny Chinese-CLIP checkpoint (trained by demo/train_tiny_model.py)."""
    assert TINY_MODEL.is_file(), "demo/tiny_clip.pt is missing; run `python demo/train_tiny_model.py`"
    return TINY_MODEL


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
    with PrivateMilvus(tmp_path_factory.mktemp("milvus_server")) as server:
        yield server.uri
