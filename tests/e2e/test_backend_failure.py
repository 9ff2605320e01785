"""A store that goes away at run time: searches fail with BackendUnavailableError and a clear message,
and the same Engine (or app) works again once the store is back. Each test stops and starts a private
MariaDB or Milvus server of its own; the shared ones are never touched."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from demo.sample_data import write_dataset
from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.errors import BackendUnavailableError
from searchcore.models.encoder import Encoder
from tests.support import App, MariaDBServer, PrivateMariaDB, PrivateMilvus, settings_env

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def small_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("small"), "valid", 18, seed=3, lmdb=False)


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMariaDB]:
    with PrivateMariaDB(tmp_path_factory.mktemp("mariadb")) as server:
        yield server


@pytest.fixture(scope="module")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMilvus]:
    with PrivateMilvus(tmp_path_factory.mktemp("milvus")) as server:
        yield server


def fill_connection_pool(engine: Engine, size: int = 4) -> None:
    """Open several pooled database connections at once, as concurrent requests do."""
    with contextlib.ExitStack() as stack:
        for _ in range(size):
            stack.enter_context(engine.images._cursor())  # type: ignore[attr-defined]


def kill_connections(server: MariaDBServer, database: str) -> int:
    """KILL every server-side connection to a database, as a restart or wait_timeout would; returns how many."""
    with server.connect(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
                    (database,))
        ids = [int(row[0]) for row in cur.fetchall()]
        for connection_id in ids:
            cur.execute(f"KILL {connection_id}")
    return len(ids)


def search_with_one_retry(engine: Engine) -> list[object]:
    try:
        return engine.search_text("红色的圆形", 5)  # type: ignore[return-value]
    except BackendUnavailableError:
        return engine.search_text("红色的圆形", 5)  # type: ignore[return-value]


@pytest.mark.slow
def test_search_fails_clearly_while_mariadb_is_down_and_recovers_without_a_new_engine(
        mariadb: PrivateMariaDB, settings: Settings, torch_encoder: Encoder, small_split: Path) -> None:
    engine = Engine(settings.replace(db_url=mariadb.url), encoder=torch_encoder)
    try:
        engine.ingest(small_split, split="valid")
        assert len(engine.search_text("红色的圆形", 5)) == 5
        fill_connection_pool(engine)

        mariadb.stop()
        for _ in range(3):  # every pooled connection is dead; each search says so, none hangs
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match=f"image database MySQL at 127.0.0.1:{mariadb.port}"):
                engine.search_text("红色的圆形", 5)
            assert time.monotonic() - started < 10

        mariadb.start()
        assert len(engine.search_text("红色的圆形", 5)) == 5, "the first search after the restart works"
        assert engine.info().images == 18

        fill_connection_pool(engine)
        mariadb.stop()
        mariadb.start()  # a restart nobody noticed: at most one search fails, then the pool is fresh
        assert len(search_with_one_retry(engine)) == 5
    finally:
        engine.close()


def test_the_first_search_after_the_database_dropped_its_connections_works(
        doomed_database: str, mariadb_server: MariaDBServer, settings: Settings, torch_encoder: Encoder,
        small_split: Path) -> None:
    """MariaDB restarted, or its wait_timeout passed, while nobody searched: nobody sees an error for it."""
    engine = Engine(settings.replace(db_url=mariadb_server.url(doomed_database)), encoder=torch_encoder)
    try:
        engine.ingest(small_split, split="valid")
        fill_connection_pool(engine)

        assert kill_connections(mariadb_server, doomed_database) >= 4
        assert len(engine.search_text("红色的圆形", 5)) == 5
        assert engine.info().images == 18

        assert kill_connections(mariadb_server, doomed_database) >= 1
        again = engine.ingest(small_split, split="valid")  # writes reconnect too, and add nothing twice
        assert (again.added, again.present, again.bad) == (0, 18, [])
        assert engine.images.count(engine.settings.library) == 18
    finally:
        engine.close()


@pytest.mark.slow
def test_search_fails_clearly_while_milvus_is_down_and_recovers_without_a_new_engine(
        milvus: PrivateMilvus, settings: Settings, torch_encoder: Encoder, small_split: Path) -> None:
    engine = Engine(settings.replace(milvus_uri=milvus.uri), encoder=torch_encoder)
    try:
        engine.ingest(small_split, split="valid")
        assert len(engine.search_text("红色的圆形", 5)) == 5

        milvus.stop()
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match=f"vector store {milvus.uri} failed to search"):
            engine.search_text("红色的圆形", 5)
        assert time.monotonic() - started < 30

        milvus.start()
        assert len(engine.search_text("红色的圆形", 5)) == 5, "the first search after the restart works"
        assert engine.info().count == 18

        milvus.stop()
        milvus.start()  # a restart nobody noticed: at most one search fails, then the collection is loaded
        assert len(search_with_one_retry(engine)) == 5
    finally:
        engine.close()


@pytest.mark.slow
def test_app_answers_503_while_mariadb_is_down_stays_up_and_recovers(
        mariadb: PrivateMariaDB, settings: Settings, small_split: Path) -> None:
    env = settings_env(settings.replace(db_url=mariadb.url, library="served"))
    with App(env, log=Path(settings.db_url).parent / "app.log") as app, \
            httpx.Client(base_url=app.url, timeout=60) as http:
        assert http.post("/api/ingest", json={"path": str(small_split), "split": "valid"}).status_code == 200
        query = {"text": "红色的圆形", "top_k": 3}
        assert http.post("/api/search", json=query).status_code == 200

        mariadb.stop()
        for _ in range(3):
            failed = http.post("/api/search", json=query)
            assert failed.status_code == 503, failed.text
            assert f"image database MySQL at 127.0.0.1:{mariadb.port}" in failed.json()["detail"]
        health = http.get("/healthz")
        assert health.status_code == 503 and "image store" in health.json()["reason"]
        assert app.alive()

        mariadb.start()
        assert http.post("/api/search", json=query).status_code == 200
        assert http.get("/healthz").status_code == 200
        assert app.alive()
