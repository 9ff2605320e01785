"""The served app: JSON API, Gradio API, access rules, health and metrics, over real HTTP.

Each app runs in a uvicorn thread on a free port, over one engine with the dataset's valid split
(90 images, 5 per class) in Milvus Lite and SQLite.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

from searchcore.engine import Engine
from searchcore.models.encoder import Encoder
from searchcore.stores.factory import open_stores
from searchcore.stores.image_db import MySQLImageStore
from searchcore.web.auth import Access
from tests.support import MariaDBServer, Served, tiny_settings, torch_engine

USERS = (("alice", "wonderland"),)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, torch_encoder: Encoder,
           dataset: Path) -> Iterator[Engine]:
    """One engine for the module, holding the valid split in library `default`."""
    with torch_engine(tmp_path_factory.mktemp("api"), model_cache, torch_encoder) as eng:
        eng.ingest(dataset, split="valid")
        yield eng


@pytest.fixture(scope="module")
def private(engine: Engine) -> Iterator[Served]:
    """The app with --auth alice:wonderland."""
    s = Served(engine, Access(users=USERS))
    yield s
    s.stop()


def test_search_returns_scores_and_urls_that_serve_the_images(served: Served) -> None:
    with httpx.Client(base_url=served.url) as http:
        response = http.post("/api/search", json={"text": "红色的圆形", "top_k": 5}, headers={"X-Request-ID": "t-42"})
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == "t-42"
        hits = response.json()
        assert len(hits) == 5 and hits[0]["score"] >= hits[-1]["score"]
        assert hits[0]["captions"] == ["红色的圆形"]
        assert hits[0]["url"] == f"/api/images/default/{hits[0]['image_id']}"
        image = http.get(hits[0]["url"])
        assert image.status_code == 200
        assert image.headers["content-type"] == "image/jpeg"
        assert len(image.headers["x-request-id"]) == 32  # generated when the caller sends none
        assert Image.open(io.BytesIO(image.content)).size == (96, 96)


def test_bad_image_ids_and_names_are_refused(served: Served) -> None:
    with httpx.Client(base_url=served.url) as http:
        for bad in ("abc", "-1", "1.5", str(1 << 63), "9" * 30, "..%2F..%2Fetc%2Fpasswd", "1000%2F..%2F1001"):
            response = http.get(f"/api/images/default/{bad}")
            assert response.status_code == 400, (bad, response.status_code)
        assert http.get("/api/images/default/../../etc/passwd").status_code in (400, 404)
        assert http.get("/api/images/default/999999").status_code == 404
        assert http.get("/api/images/nosuch/1000").status_code == 404
        assert http.get("/api/images/bad-name!/1000").status_code == 400


def test_search_errors_are_statuses_with_a_message(served: Served) -> None:
    with httpx.Client(base_url=served.url) as http:
        empty = http.post("/api/search", json={"text": "  "})
        assert empty.status_code == 400 and "empty" in empty.json()["detail"]
        missing = http.post("/api/search", json={"text": "红色的圆形", "library": "nosuch"})
        assert missing.status_code == 404 and "nosuch" in missing.json()["detail"]
        assert http.post("/api/search", json={"text": "红色的圆形", "top_k": 0}).status_code == 422
        assert http.post("/api/ingest", json={"path": "/no/such/folder", "library": "x"}).status_code == 400


def test_libraries_and_openapi_docs(served: Served) -> None:
    with httpx.Client(base_url=served.url) as http:
        libraries = http.get("/api/libraries").json()
        assert [(i["library"], i["count"]) for i in libraries] == [("default", 90)]
        assert "/api/search" in http.get("/openapi.json").json()["paths"]
        assert http.get("/docs").status_code == 200


@pytest.mark.parametrize("access", [Access(read_only=True), Access(share=True),
                                    Access(users=USERS, read_only=True)], ids=["read-only", "share", "auth+ro"])
def test_writes_are_forbidden_when_read_only_or_shared_without_auth(engine: Engine, dataset: Path,
                                                                    access: Access) -> None:
    app = Served(engine, access)
    try:
        with httpx.Client(base_url=app.url, auth=USERS[0]) as http:
            assert http.post("/api/ingest", json={"path": str(dataset), "split": "train", "library": "x"}
                             ).status_code == 403
            assert http.delete("/api/libraries/default").status_code == 403
        if not access.users:
            client = Client(app.url, verbose=False)
            with pytest.raises(Exception, match="disabled"):
                client.predict("Chinese-CLIP dataset", str(dataset), "train", "", None, "x", api_name="/ingest")
            client.close()
    finally:
        app.stop()
    assert [i.library for i in engine.libraries()] == ["default"]


def test_auth_guards_the_api_and_the_ui(private: Served, dataset: Path, engine: Engine) -> None:
    with httpx.Client(base_url=private.url) as http:
        body = {"path": str(dataset), "split": "train", "library": "authed"}
        refused = http.post("/api/ingest", json=body)
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
        assert http.post("/api/ingest", json=body, auth=("alice", "wrong")).status_code == 401
        assert http.post("/api/search", json={"text": "红色的圆形"}).status_code == 401
        report = http.post("/api/ingest", json=body, auth=USERS[0])
        assert report.status_code == 200 and report.json()["added"] == 36
        assert http.delete("/api/libraries/authed", auth=USERS[0]).json()["dropped"] is True
    with pytest.raises(Exception):  # noqa: B017 - gradio_client raises a plain ValueError on a login page
        Client(private.url, verbose=False)
    client = Client(private.url, auth=USERS[0], verbose=False)
    gallery, _ = client.predict("红色的圆形", 3, "default", api_name="/search")
    client.close()
    assert [item["caption"].split(" · ")[-1] for item in gallery] == ["红色的圆形"] * 3


def dominant(picture: Image.Image) -> str:
    """red or blue, whichever covers more of the picture."""
    rgb = np.asarray(picture.convert("RGB")).astype(int)
    red = ((rgb[..., 0] > 150) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)).sum()
    blue = ((rgb[..., 2] > 150) & (rgb[..., 0] < 90) & (rgb[..., 1] < 120)).sum()
    return "red" if red > blue else "blue"


def test_concurrent_users_each_get_their_own_results(served: Served) -> None:
    queries = {"红色的圆形": "red", "蓝色的正方形": "blue"}
    start = threading.Barrier(4)
    failures: list[str] = []

    def gradio_user(query: str) -> None:
        client = Client(served.url, verbose=False)
        start.wait()
        for _ in range(15):
            gallery, status = client.predict(query, 3, "default", api_name="/search")
            got = [item["caption"].split(" · ")[-1] for item in gallery]
            if got != [query] * 3 or query not in status or dominant(Image.open(gallery[0]["image"])) != queries[query]:
                failures.append(f"gradio {query}: {got} {status}")
        client.close()

    def api_user(query: str) -> None:
        with httpx.Client(base_url=served.url) as http:
            start.wait()
            for _ in range(15):
                hits = http.post("/api/search", json={"text": query, "top_k": 3}).json()
                colour = dominant(Image.open(io.BytesIO(http.get(hits[0]["url"]).content)))
                if [h["captions"] for h in hits] != [[query]] * 3 or colour != queries[query]:
                    failures.append(f"api {query}: {hits}")

    threads = [threading.Thread(target=fn, args=(q,)) for fn in (gradio_user, api_user) for q in queries]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures[:4]


def test_health_and_metrics(served: Served) -> None:
    with httpx.Client(base_url=served.url) as http:
        health = http.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        http.post("/api/search", json={"text": "绿色的三角形", "top_k": 2})
        metrics = http.get("/metrics")
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        assert 'searchcore_search_seconds_count{kind="text"}' in metrics.text
        assert "searchcore_ingested_images_total" in metrics.text
        assert "searchcore_backend_errors_total" in metrics.text


def test_a_lost_database_is_503_and_unhealthy_and_the_app_keeps_serving(
        tmp_path: Path, model_cache: Path, torch_encoder: Encoder, dataset: Path, doomed_database: str,
        mariadb_server: MariaDBServer) -> None:
    settings = tiny_settings(tmp_path, model_cache, backend="torch", precision="fp32")
    engine = Engine(settings, open_stores(settings, images=MySQLImageStore(mariadb_server.url(doomed_database))),
                    encoder=torch_encoder)
    app = Served(engine, Access())
    try:
        engine.ingest(dataset, split="train")
        with httpx.Client(base_url=app.url) as http:
            assert http.post("/api/search", json={"text": "红色的圆形", "top_k": 2}).status_code == 200
            conn = mariadb_server.connect(autocommit=True)
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE `{doomed_database}`")
            conn.close()
            for _ in range(2):
                failed = http.post("/api/search", json={"text": "红色的圆形", "top_k": 2})
                assert failed.status_code == 503 and "image database" in failed.json()["detail"]
            health = http.get("/healthz")
            assert health.status_code == 503 and "image store" in health.json()["reason"]
            assert 'searchcore_backend_errors_total{operation="search"} 2.0' in http.get("/metrics").text
    finally:
        app.stop()
        engine.close()
