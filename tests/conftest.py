"""Shared fixtures: the tiny real model, Chinese-CLIP-format datasets, and real backends.

Every backend is real: Milvus Lite and SQLite in a temporary folder, a
database of its own on the MariaDB at 127.0.0.1:3306 (or, when none answers
there, on a private one started from the installed `mariadbd`), and a Milvus
server started from the PyPI `milvus` package on free ports. The helpers behind
them are in tests/support.py; tests import them from there, never from this
file, which pytest alone imports.

Markers: a test that needs a Milvus server or MariaDB is marked `server` here,
by the fixtures it uses (a parameter that asks for one through getfixturevalue
carries the mark itself); browser tests mark their modules `browser`. So
`pytest -m "not browser and not server"` is the quick loop, and plain `pytest`
(`make test`, CI) runs everything.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.models.encoder import Encoder, load_encoder
from searchcore.web.auth import Access
from tests.support import (
    MARIADB_PORT,
    TINY_MODEL,
    CliRun,
    MariaDBServer,
    PrivateMariaDB,
    PrivateMilvus,
    Served,
    scratch_database,
    settings_env,
    tiny_settings,
)

# Fixtures that reach a Milvus server or MariaDB; a test that uses one, directly or through another, is `server`.
SERVER_FIXTURES = {"milvus_server", "mariadb_server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


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
    """The tiny model on the default CPU path (OpenVINO at precision auto: f32)."""
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


@pytest.fixture(scope="module")
def served(engine: Engine) -> Iterator[Served]:
    """The app over the module's engine (a module that uses this defines a module-scoped `engine`), writes open."""
    s = Served(engine, Access())
    yield s
    s.stop()


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Chinese-CLIP-format dataset: valid (90 images) and train (36) splits, tsv + jsonl + LMDB."""
    from demo.sample_data import write_dataset

    root = tmp_path_factory.mktemp("dataset")
    write_dataset(root, "valid", 90, seed=1, first_id=1000)
    write_dataset(root, "train", 36, seed=2, first_id=5000)
    return root


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    """The MariaDB on 127.0.0.1:3306, or, when none answers there, a private one from the installed mariadbd."""
    machine = MariaDBServer(MARIADB_PORT)
    if machine.answers():
        yield machine
        return
    with PrivateMariaDB(tmp_path_factory.mktemp("mariadb")) as private:
        yield MariaDBServer(private.port)


@pytest.fixture(scope="session")
def mariadb_url(mariadb_server: MariaDBServer) -> Iterator[str]:
    """A fresh database on the real MariaDB server for the session."""
    with scratch_database(mariadb_server, "searchcore_test") as name:
        yield mariadb_server.url(name)


@pytest.fixture
def doomed_database(mariadb_server: MariaDBServer) -> Iterator[str]:
    """A MariaDB database of this test's own, which the test may destroy."""
    with scratch_database(mariadb_server, "searchcore_doomed") as name:
        yield name


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Milvus standalone server (PyPI `milvus` 2.3.5) on free ports; yields its URI."""
    with PrivateMilvus(tmp_path_factory.mktemp("milvus_server")) as server:
        yield server.uri


@pytest.fixture
def server_settings(settings: Settings, milvus_server: str, mariadb_url: str) -> Settings:
    """Tiny-model settings on the Milvus server and MariaDB, with a library of this test's own."""
    return settings.replace(milvus_uri=milvus_server, db_url=mariadb_url, library=f"srv_{uuid.uuid4().hex[:8]}")


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    """The SEARCHCORE_* variables of `settings`, for a `searchcore` run in a subprocess."""
    return settings_env(settings)


@pytest.fixture
def cli_in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> CliRun:
    """Run `searchcore ARGS` in this process with the settings' SEARCHCORE_* variables: (exit code, out, err).

    In-process, a test can watch what the command does to the engine (with monkeypatch) and pays no start-up.
    """

    def run(settings: Settings, *args: str) -> tuple[int, str, str]:
        from searchcore import cli

        for name, value in settings_env(settings).items():
            monkeypatch.setenv(name, value)
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run
