"""Server mode: the engine against a real Milvus 2.3.5 server and MariaDB, as a deployment runs it."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymilvus import MilvusClient

from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.errors import BackendUnavailableError, LibraryError
from searchcore.models.encoder import Encoder
from searchcore.stores.vectors import PREFIX, MilvusVectorStore
from tests.support import free_port, run_cli, settings_env

pytestmark = pytest.mark.slow


@pytest.fixture
def server_engine(server_settings: Settings, torch_encoder: Encoder) -> Iterator[Engine]:
    """An engine on the servers; its library is dropped afterwards."""
    engine = Engine(server_settings, encoder=torch_encoder)
    yield engine
    with contextlib.suppress(LibraryError):
        engine.drop()
    engine.close()


def test_search_right_after_ingest_sees_every_image(server_engine: Engine, server_settings: Settings,
                                                    dataset: Path, torch_encoder: Encoder) -> None:
    report = server_engine.ingest(dataset, split="valid")

    assert report.added == 90 and not report.bad
    results = server_engine.search_text("红色的圆形", top_k=10)
    assert len(results) == 10 and all(1000 <= r.image_id < 1090 and r.data for r in results)
    other = Engine(server_settings, encoder=torch_encoder)  # fresh connections, as another process has
    try:
        assert other.info().count == 90 and other.info().images == 90
    finally:
        other.close()


def test_server_library_records_model_and_hnsw_index_in_collection_properties(
        server_engine: Engine, server_settings: Settings, milvus_server: str) -> None:
    meta = server_engine.vectors.open_library(server_settings.library, "tiny", 64, create=True)

    assert (meta.index, meta.index_params) == ("HNSW", {"M": 16, "efConstruction": 200})
    client = MilvusClient(uri=milvus_server)
    try:
        name = PREFIX + server_settings.library
        described = client.describe_collection(name)
        index = client.describe_index(name, "vector")
    finally:
        client.close()
    assert described["properties"]["searchcore.model"] == "tiny"
    assert json.loads(described["properties"]["searchcore.index"]) == {"type": "HNSW",
                                                                       "params": {"M": 16, "efConstruction": 200}}
    assert described["consistency_level_name"] == "Strong"
    assert (index["index_type"], index["metric_type"], index["M"], index["efConstruction"]) == \
        ("HNSW", "IP", "16", "200")


def test_reopening_a_library_with_another_model_is_refused(server_engine: Engine, server_settings: Settings,
                                                           milvus_server: str) -> None:
    server_engine.vectors.open_library(server_settings.library, "tiny", 64, create=True)
    fresh = MilvusVectorStore(milvus_server)  # nothing cached: the refusal comes from the server's record

    try:
        with pytest.raises(LibraryError, match=r"built with model tiny \(64-d\).*other-model \(512-d\)"):
            fresh.open_library(server_settings.library, "other-model", 512, create=True)
    finally:
        fresh.close()


def test_unreachable_server_raises_backend_unavailable_after_retrying(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    started = time.monotonic()

    with pytest.raises(BackendUnavailableError, match=rf"127.0.0.1:{port} is unavailable \(retried for 2s\)"):
        MilvusVectorStore(f"http://127.0.0.1:{port}", connect_timeout=2)
    assert time.monotonic() - started < 15
    assert len([r for r in caplog.records if "retrying in" in r.getMessage()]) >= 2


def test_store_started_before_the_server_connects_once_it_is_up(milvus_server: str) -> None:
    port = free_port()
    target = ("127.0.0.1", int(milvus_server.rsplit(":", 1)[1]))
    server = _Forwarder(port, target)  # the "server" appears on the port 3 s after the store starts connecting
    threading.Thread(target=server.serve_later, args=(3,), daemon=True).start()
    started = time.monotonic()
    try:
        store = MilvusVectorStore(f"http://127.0.0.1:{port}", connect_timeout=60)
        waited = time.monotonic() - started
        store.libraries()
        store.close()
    finally:
        server.serving.wait(10)
        server.shutdown()
        server.server_close()
    assert waited >= 2.5


SEARCHER = """
import json, sys, time
from searchcore.config import Settings
from searchcore.engine import build_engine
from searchcore.errors import SearchcoreError

engine = build_engine(Settings.from_env())
deadline, expected = time.monotonic() + float(sys.argv[1]), int(sys.argv[2])
while time.monotonic() < deadline:
    count = engine.info().count
    try:
        hits = len(engine.search_text("红色的圆形", top_k=5))
    except SearchcoreError as exc:  # no library until the ingest creates it
        hits = str(exc)
    print(json.dumps({"count": count, "hits": hits}, ensure_ascii=False), flush=True)
    if count >= expected:
        break
    time.sleep(0.2)
engine.close()
"""


def test_one_process_ingests_while_another_searches(server_settings: Settings, dataset: Path,
                                                    tmp_path: Path) -> None:
    env = settings_env(server_settings)
    script = tmp_path / "searcher.py"
    script.write_text(SEARCHER, encoding="utf-8")
    searcher = subprocess.Popen([sys.executable, str(script), "240", "90"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    try:
        assert searcher.stdout is not None
        first = json.loads(searcher.stdout.readline() or "{}")  # the searcher runs before the ingest starts
        ingest = run_cli("ingest", str(dataset), "--split", "valid", env=env)
        rest, errors = searcher.communicate(timeout=240)
    finally:
        searcher.kill()
    try:
        assert ingest.returncode == 0, ingest.stderr
        assert "90 added" in ingest.stdout
        assert searcher.returncode == 0, errors
        assert first["count"] == 0 and "does not exist" in first["hits"]
        last = json.loads(rest.strip().splitlines()[-1])
        assert last == {"count": 90, "hits": 5}
    finally:
        run_cli("drop", env=env)


class _Forwarder(socketserver.ThreadingTCPServer):
    """A TCP port that relays to the real server, standing for a server that starts later."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.target = target
        self.serving = threading.Event()
        super().__init__(("127.0.0.1", port), _Relay, bind_and_activate=False)

    def serve_later(self, delay: float) -> None:
        """Start listening after delay seconds, then relay until shut down."""
        time.sleep(delay)
        self.server_bind()
        self.server_activate()
        self.serving.set()
        self.serve_forever(poll_interval=0.1)


class _Relay(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        upstream = socket.create_connection(self.server.target)  # type: ignore[attr-defined]
        back = threading.Thread(target=_pump, args=(upstream, self.request), daemon=True)
        back.start()
        _pump(self.request, upstream)
        back.join()
        upstream.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)
