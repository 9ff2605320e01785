"""A store that goes away at run time: searches fail with BackendUnavailableError and a clear message,
and the same Engine (or app) works again once the store is back. Each test stops and starts a private
MariaDB or Milvus server of its own; the shared ones are never touched."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import MARIADB, settings_env

from bench.loadtest import App
from demo.sample_data import write_dataset
from searchcore.config import Settings
from searchcore.encoder import Encoder
from searchcore.engine import Engine
from searchcore.errors import BackendUnavailableError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(ready: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up in {timeout:g}s")
        time.sleep(0.2)


class PrivateMariaDB:
    """A MariaDB server of our own in a temporary folder, on a free port."""

    def __init__(self, base: Path) -> None:
        self.base, self.port = base, free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={base / 'data'}", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, timeout=120)

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/searchcore"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("mariadbd") or "mariadbd", "--no-defaults", f"--datadir={self.base / 'data'}",
             f"--port={self.port}", f"--socket={self.base / 'sock'}", "--bind-address=127.0.0.1", "--user=root",
             f"--pid-file={self.base / 'pid'}", "--skip-name-resolve", "--innodb-buffer-pool-size=32M"],
            stdout=subprocess.DEVNULL, stderr=(self.base / "error.log").open("ab"))
        wait_until(self._answers, "private MariaDB")
        with self._connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS searchcore CHARACTER SET utf8mb4")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
            self.proc = None

    def _connect(self) -> object:
        import pymysql

        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", password="", connect_timeout=2)

    def _answers(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, (self.base / "error.log").read_text()[-2000:]
        try:
            self._connect().close()  # type: ignore[attr-defined]
            return True
        except Exception:
            return False


class PrivateMilvus:
    """A Milvus standalone server (PyPI `milvus`) of our own, restartable on the same ports and data.

    The package's embedded etcd always takes peer port 2380, so a second server on the machine would
    fail; an etcd config file of our own moves both etcd ports to free ones.
    """

    def __init__(self, base: Path) -> None:
        import milvus
        from milvus import MilvusServer, MilvusServerConfig

        data = Path(milvus.__file__).parent / "data"
        client_port, peer_port = free_port(), free_port()
        etcd = base / "etcd.yaml"
        etcd.write_text(f"listen-client-urls: http://127.0.0.1:{client_port}\n"
                        f"advertise-client-urls: http://127.0.0.1:{client_port}\n"
                        f"listen-peer-urls: http://127.0.0.1:{peer_port}\n"
                        f"initial-advertise-peer-urls: http://127.0.0.1:{peer_port}\n"
                        f"initial-cluster: default=http://127.0.0.1:{peer_port}\n")
        template = base / "milvus.yaml.template"
        template.write_text((data / "config.yaml.template").read_text().replace(
            "etcd:\n", f"etcd:\n  config:\n    path: {etcd}\n", 1))
        config = MilvusServerConfig(template=str(template), etcd_port=client_port)
        config.glog_conf_file = str(data / "glog.conf")  # set only for the default template
        self.server = MilvusServer(config)
        self.server.set_base_dir(str(base))
        self.started_once = False

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server.listen_port}"

    def start(self) -> None:
        if self.started_once:
            # Restart on the ports and config already written: re-resolving would move ports that the
            # stopped server left in TIME_WAIT, and etcd must keep its ports to keep its data.
            self.server.config.resolve = lambda: None
        self.server.start()
        self.started_once = True

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="module")
def small_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("small"), "valid", 18, seed=3, lmdb=False)


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMariaDB]:
    server = PrivateMariaDB(tmp_path_factory.mktemp("mariadb"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMilvus]:
    server = PrivateMilvus(tmp_path_factory.mktemp("milvus"))
    server.start()
    yield server
    server.stop()


def fill_connection_pool(engine: Engine, size: int = 4) -> None:
    """Open several pooled database connections at once, as concurrent requests do."""
    with contextlib.ExitStack() as stack:
        for _ in range(size):
            stack.enter_context(engine.images._cursor())  # type: ignore[attr-defined]


def kill_connections(database: str) -> int:
    """KILL every server-side connection to a database, as a restart or wait_timeout would; returns how many."""
    import pymysql

    with pymysql.connect(**MARIADB, autocommit=True) as conn, conn.cursor() as cur:
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
        doomed_database: str, settings: Settings, torch_encoder: Encoder, small_split: Path) -> None:
    """MariaDB restarted, or its wait_timeout passed, while nobody searched: nobody sees an error for it."""
    engine = Engine(settings.replace(db_url=f"mysql://root@127.0.0.1:3306/{doomed_database}"), encoder=torch_encoder)
    try:
        engine.ingest(small_split, split="valid")
        fill_connection_pool(engine)

        assert kill_connections(doomed_database) >= 4
        assert len(engine.search_text("红色的圆形", 5)) == 5
        assert engine.info().images == 18

        assert kill_connections(doomed_database) >= 1
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
