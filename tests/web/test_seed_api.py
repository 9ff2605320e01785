"""The seed's own routes (/img/load, /img/search, /img/count, /img/drop, /img/upload, GET /data, GET /progress),
called over real HTTP as the blog post's readers and the bootcamp's scripts call them.

The dataset folder holds the valid split (90 shapes, 5 per class) as valid_imgs.tsv, valid_texts.jsonl and
valid_imgs.img_feat.jsonl extracted with the tiny model, as cn_clip's extract_features.py writes them.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import io
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from searchcore.engine import Engine
from searchcore.evaluate import extract
from searchcore.models.encoder import Encoder
from searchcore.web.auth import Access
from tests.support import Served, tiny_settings, torch_engine

USERS = (("alice", "wonderland"),)
TIMEOUT = 300  # a load encodes on two shared cores


@pytest.fixture(scope="module")
def features_folder(tmp_path_factory: pytest.TempPathFactory, dataset: Path, torch_encoder: Encoder) -> Path:
    """The valid split with its image features, as the post's readers have it."""
    root = tmp_path_factory.mktemp("post")
    for name in ("valid_imgs.tsv", "valid_texts.jsonl"):
        shutil.copy(dataset / name, root / name)
    extract(torch_encoder, root, "valid")
    return root


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, torch_encoder: Encoder) -> Iterator[Engine]:
    """An empty engine for the module (conftest's `served` serves it)."""
    with torch_engine(tmp_path_factory.mktemp("seed"), model_cache, torch_encoder) as eng:
        yield eng


def captioned(folder: Path, caption: str) -> set[int]:
    """The image ids the split's texts give a caption."""
    for line in (folder / "valid_texts.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry["text"] == caption:
            return set(entry["image_ids"])
    raise AssertionError(f"no text {caption!r}")


def tsv_image(folder: Path, image_id: int) -> bytes:
    for line in (folder / "valid_imgs.tsv").read_text().splitlines():
        key, value = line.split("\t")
        if int(key) == image_id:
            return base64.b64decode(value)
    raise AssertionError(f"no image {image_id}")


def features(folder: Path) -> dict[int, np.ndarray]:
    lines = (folder / "valid_imgs.img_feat.jsonl").read_text().splitlines()
    return {e["image_id"]: np.asarray(e["feature"], dtype=np.float32) for e in map(json.loads, lines)}


def refused(answer: httpx.Response, status: int = 400) -> str:
    """The message of a refusal in the seed's shape; fails on any other shape."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"status", "msg"} and body["status"] is False, body
    assert body["msg"] and "Traceback" not in body["msg"]
    return str(body["msg"])


def test_the_posts_walkthrough(served: Served, engine: Engine, features_folder: Path,
                               torch_encoder: Encoder) -> None:
    with httpx.Client(base_url=served.url, timeout=TIMEOUT) as http:
        loaded = http.post("/img/load", json={"Table": "post", "File": str(features_folder)})
        assert loaded.status_code == 200, loaded.text
        assert loaded.json() == ("Successfully loaded data into post: valid: 90 added, 0 already present, 0 bad "
                                 "(vectors from valid_imgs.img_feat.jsonl, not re-encoded)")
        assert http.get("/progress").json() == "current: 90, total: 90"

        found = http.post("/img/search", params={"table_name": "post", "content": "红色的圆形"}, data={"topk": "5"})
        assert found.status_code == 200, found.text
        hits = found.json()
        assert {h["image_id"] for h in hits} == captioned(features_folder, "红色的圆形")
        distances = [h["distance"] for h in hits]
        assert distances == sorted(distances, reverse=True)
        # distance is the cosine of the text's vector with the image's own vector from the feature file
        text = torch_encoder.encode_texts(["红色的圆形"])[0]
        vectors = features(features_folder)
        for hit in hits:
            vector = vectors[hit["image_id"]]
            assert hit["distance"] == pytest.approx(float(text @ vector / np.linalg.norm(vector)), abs=1e-4)
            assert hit["url"] == f"/api/images/post/{hit['image_id']}"
            for served_image in (http.get(hit["url"]), http.get("/data", params={"image_path": hit["url"]})):
                assert served_image.status_code == 200
                assert served_image.headers["content-type"] == "image/jpeg"
                assert served_image.content == tsv_image(features_folder, hit["image_id"])

        assert http.post("/img/count", params={"table_name": "post"}).json() == 90
        dropped = http.post("/img/drop", params={"table_name": "post"})
        assert dropped.status_code == 200 and dropped.json() == "Successfully dropped post"
        assert http.post("/img/count", params={"table_name": "post"}).json() == 0
    assert engine.vectors.meta("post") is None


def test_load_takes_features_where_present_and_encodes_the_other_splits(
        served: Served, engine: Engine, features_folder: Path, dataset: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(features_folder, folder)
    for name in ("train_imgs.tsv", "train_texts.jsonl"):
        shutil.copy(dataset / name, folder / name)
    with httpx.Client(base_url=served.url, timeout=TIMEOUT) as http:
        loaded = http.post("/img/load", json={"Table": "mixed", "File": str(folder)}).json()
        assert loaded == ("Successfully loaded data into mixed: train: 36 added, 0 already present, 0 bad (encoded); "
                          "valid: 90 added, 0 already present, 0 bad "
                          "(vectors from valid_imgs.img_feat.jsonl, not re-encoded)")
        assert http.post("/img/count", params={"table_name": "mixed"}).json() == 126
    stored = engine.vectors.vectors("mixed", list(features(folder)))
    for image_id, vector in features(folder).items():
        np.testing.assert_allclose(stored[image_id], vector / np.linalg.norm(vector), atol=1e-6)
    engine.drop("mixed")


def test_features_of_another_dimension_are_refused_before_anything_is_stored(
        served: Served, engine: Engine, features_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "other_model"
    shutil.copytree(features_folder, folder)
    with (folder / "valid_imgs.img_feat.jsonl").open("w") as out:
        for image_id in features(features_folder):
            out.write(json.dumps({"image_id": image_id, "feature": [0.1] * 1024}) + "\n")
    with httpx.Client(base_url=served.url, timeout=TIMEOUT) as http:
        msg = refused(http.post("/img/load", json={"Table": "other", "File": str(folder)}))
        assert "1024-dimensional" in msg and f"makes {engine.encoder.dim}" in msg
        assert http.post("/img/count", params={"table_name": "other"}).json() == 0


def test_data_serves_only_images_of_a_library(served: Served, engine: Engine, features_folder: Path) -> None:
    engine.ingest_dataset(features_folder, library="served")
    image_id = min(features(features_folder))
    with httpx.Client(base_url=served.url, timeout=TIMEOUT) as http:
        by_id = http.get("/data", params={"image_path": str(image_id), "table_name": "served"})
        assert by_id.status_code == 200 and by_id.content == tsv_image(features_folder, image_id)
        for path in ("/etc/passwd", str(features_folder / "valid_imgs.tsv"), engine.settings.db_url,
                     "../../images.db", f"/api/images/served/{image_id}/../../../etc/passwd",
                     f"file:///api/images/served/{image_id}"):
            assert "no other file is served" in refused(http.get("/data", params={"image_path": path}))
        assert "not in library" in refused(http.get("/data", params={"image_path": "/api/images/served/7"}))
    engine.drop("served")


def test_errors_come_back_in_the_seeds_shape(served: Served, tmp_path: Path) -> None:
    with httpx.Client(base_url=served.url, timeout=TIMEOUT) as http:
        assert "does not exist" in refused(http.post("/img/load", json={"Table": "x", "File": str(tmp_path / "no")}))
        assert "File" in refused(http.post("/img/load", json={"Table": "x"}))
        assert "content" in refused(http.post("/img/search", params={"table_name": "x"}))
        assert "topk" in refused(http.post("/img/search", params={"content": "猫"}, data={"topk": "many"}))
        assert "invalid library name" in refused(http.post("/img/count", params={"table_name": "1 bad"}))
        assert "does not exist" in refused(http.post("/img/drop", params={"table_name": "nosuch"}))
        assert "send an image file" in refused(http.post("/img/upload", params={"table_name": "x"}))
        # the app's own routes keep FastAPI's shape
        assert http.post("/api/search", json={"text": "猫", "top_k": 0}).status_code == 422


def test_upload_adds_one_image_and_fetches_no_url_unless_allowed(
        served: Served, engine: Engine, tmp_path: Path, model_cache: Path, torch_encoder: Encoder) -> None:
    picture = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(picture, format="PNG")
    asked: list[str] = []
    with picture_server(picture.getvalue(), asked) as url, httpx.Client(base_url=served.url, timeout=TIMEOUT) as http:
        added = http.post("/img/upload", params={"table_name": "uploads"},
                          files={"image": ("red.png", picture.getvalue(), "image/png")})
        assert added.status_code == 200, added.text
        image_id = int(added.json().removeprefix("Successfully loaded data: "))
        assert http.get("/data", params={"image_path": f"/api/images/uploads/{image_id}"}).content == picture.getvalue()
        assert http.post("/img/count", params={"table_name": "uploads"}).json() == 1
        assert "not an image" in refused(http.post("/img/upload", params={"table_name": "uploads"},
                                                   files={"image": ("x.png", b"not a picture", "image/png")}))

        msg = refused(http.post("/img/upload", params={"table_name": "uploads", "url": url}))
        assert "SEARCHCORE_UPLOAD_URL_HOSTS" in msg and asked == []
    engine.drop("uploads")

    settings = tiny_settings(tmp_path, model_cache, backend="torch", precision="fp32", upload_url_hosts="127.0.0.1")
    allowing = Engine(settings, encoder=torch_encoder)
    app = Served(allowing, Access())
    try:
        with picture_server(picture.getvalue(), asked) as url, httpx.Client(base_url=app.url, timeout=TIMEOUT) as http:
            added = http.post("/img/upload", params={"table_name": "uploads", "url": url})
            assert added.status_code == 200, added.text
            assert asked == ["/red.png"]
            assert http.post("/img/count", params={"table_name": "uploads"}).json() == 1
            other_host = url.replace("127.0.0.1", "localhost")
            assert "fetches no image from localhost" in refused(
                http.post("/img/upload", params={"table_name": "uploads", "url": other_host}))
    finally:
        app.stop()
        allowing.close()


def test_writes_need_the_writer_role(engine: Engine, features_folder: Path) -> None:
    engine.ingest_dataset(features_folder, library="kept")
    shared, private = Served(engine, Access(share=True)), Served(engine, Access(users=USERS))
    try:
        with httpx.Client(base_url=shared.url, timeout=TIMEOUT) as http:
            assert "shared publicly" in refused(
                http.post("/img/load", json={"Table": "kept", "File": str(features_folder)}), 403)
            assert "shared publicly" in refused(http.post("/img/drop", params={"table_name": "kept"}), 403)
            # reads stay open on a share link
            assert http.post("/img/count", params={"table_name": "kept"}).json() == 90
            hits = http.post("/img/search", params={"table_name": "kept", "content": "红色的圆形"},
                             data={"topk": "1"}).json()
            assert hits[0]["image_id"] in captioned(features_folder, "红色的圆形")
        with httpx.Client(base_url=private.url, timeout=TIMEOUT) as http:
            assert "sign in" in refused(http.post("/img/drop", params={"table_name": "kept"}), 401)
            assert "sign in" in refused(http.post("/img/count", params={"table_name": "kept"}), 401)
            assert http.post("/img/count", params={"table_name": "kept"}, auth=USERS[0]).json() == 90
        assert engine.info("kept").count == 90
    finally:
        shared.stop()
        private.stop()
        engine.drop("kept")


def test_the_routes_are_listed_in_the_docs_under_their_own_tag(served: Served) -> None:
    spec = httpx.get(f"{served.url}/openapi.json").json()
    seed = {(method, path) for path, methods in spec["paths"].items() for method, op in methods.items()
            if "seed-compatible" in op.get("tags", [])}
    assert seed == {("post", "/img/load"), ("post", "/img/search"), ("post", "/img/count"), ("post", "/img/drop"),
                    ("post", "/img/upload"), ("get", "/data"), ("get", "/progress")}


@contextlib.contextmanager
def picture_server(picture: bytes, asked: list[str]) -> Iterator[str]:
    """A local HTTP server answering every GET with one picture and recording the paths asked for."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(picture)))
            self.end_headers()
            self.wfile.write(picture)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/red.png"
    finally:
        server.shutdown()
        server.server_close()
