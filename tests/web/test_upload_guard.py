"""Shared without --auth, anyone on the internet can reach Gradio's upload route: the only upload such an app
needs is one query image for search by image, so that is all it takes, small and at a limited rate."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from demo.sample_data import write_dataset
from searchcore.web.api import SHARED_UPLOAD_BYTES, SHARED_UPLOADS_PER_MINUTE, SHARED_UPLOADS_PER_MINUTE_IN_ALL
from tests.support import App, app_env, ingest_before_serving


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("upload_guard")
    write_dataset(root / "dataset", "valid", 18, seed=1, lmdb=False)
    line = (root / "dataset" / "valid_imgs.tsv").read_text().splitlines()[0]
    (root / "query.jpg").write_bytes(base64.b64decode(line.split("\t")[1]))
    return root / "query.jpg"


@pytest.fixture(scope="module")
def shared_app(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, tiny_model: Path,
               picture: Path) -> Iterator[App]:
    """app.py --share without --auth (the share link itself cannot open here: no network; it keeps serving)."""
    work = tmp_path_factory.mktemp("shared")
    env = app_env(work, model_cache)
    ingest_before_serving(env, picture.parent)
    with App(env, ["--share"], log=work / "app.log") as app:
        yield app


def upload(http: httpx.Client, data: bytes, client_ip: str | None = None) -> httpx.Response:
    """POST one file to Gradio's upload route; client_ip comes as the share tunnel's X-Forwarded-For."""
    headers = {"X-Forwarded-For": f"198.51.100.1, {client_ip}"} if client_ip else {}
    return http.post("/gradio_api/upload", files={"files": ("q.jpg", data, "image/jpeg")}, headers=headers)


def test_shared_without_auth_uploads_are_one_small_query_image_at_a_time(shared_app: App, picture: Path) -> None:
    client = Client(shared_app.url, verbose=False)
    try:  # search by image, the reason uploads stay open, works
        gallery, _ = client.predict(handle_file(str(picture)), 3, "shapes", api_name="/search_image")
        assert len(gallery) == 3
    finally:
        client.close()

    image = picture.read_bytes()
    with httpx.Client(base_url=shared_app.url, timeout=60) as http:
        big = upload(http, image + b"\0" * SHARED_UPLOAD_BYTES)
        assert big.status_code == 413 and f"{SHARED_UPLOAD_BYTES // 2**20} MB" in big.json()["detail"]
        chunked = http.post("/gradio_api/upload", content=iter([b"--x\r\n", image]),
                            headers={"Content-Type": "multipart/form-data; boundary=x"})
        assert chunked.status_code == 411, chunked.status_code
        for path in ("/gradio_api/process_recording", "/gradio_api/component_server"):
            other = http.post(path, files={"files": ("q.jpg", image, "image/jpeg")})
            assert other.status_code == 403 and "--auth" in other.json()["detail"], (path, other.status_code)

        accepted = 0
        while (answer := upload(http, image)).status_code == 200:
            accepted += 1
            assert accepted <= SHARED_UPLOADS_PER_MINUTE
        assert accepted == SHARED_UPLOADS_PER_MINUTE - 1  # one went to the search above
        assert answer.status_code == 429 and int(answer.headers["Retry-After"]) > 0
        assert "uploads a minute" in answer.json()["detail"]

        # each client behind the share tunnel has a budget of its own, and all of them together one more
        accepted_in_all = SHARED_UPLOADS_PER_MINUTE
        for n in range(1, SHARED_UPLOADS_PER_MINUTE_IN_ALL + 1):
            answer = upload(http, image, f"203.0.113.{n}")
            if answer.status_code != 200:
                break
            accepted_in_all += 1
        assert accepted_in_all == SHARED_UPLOADS_PER_MINUTE_IN_ALL
        assert answer.status_code == 429 and "in all" in answer.json()["detail"]
        # searching by text needs no upload, and stays open
        assert http.post("/api/search", json={"text": "红色的圆形", "top_k": 2}).status_code == 200
    assert shared_app.alive()
