"""Who may change what: with --read-only or --share (and no --auth) every write path is refused, whichever
door it comes through (JSON API, Gradio events, uploads); with --auth every route needs a login; image
URLs and Gradio's file routes never reach outside the stores; upload size and count limits hold.

test_api.py covers the basic 401/403 answers of the JSON API; these tests go through app.py's flags and
the doors around it.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from demo.sample_data import write_dataset
from searchcore.indexing.uploads import MAX_UPLOAD_BYTES, MAX_UPLOAD_FILES
from searchcore.web.ui.build_tab import SOURCE_DATASET, SOURCE_UPLOAD
from tests.support import App, app_env, ingest_before_serving

USER = ("alice", "wonderland")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("access")
    write_dataset(root / "dataset", "valid", 18, seed=1, lmdb=False)
    (root / "pictures").mkdir()
    for n, line in enumerate((root / "dataset" / "valid_imgs.tsv").read_text().splitlines()[:2]):
        (root / "pictures" / f"{n}.jpg").write_bytes(base64.b64decode(line.split("\t")[1]))
    return root


def libraries(url: str, auth: tuple[str, str] | None = None) -> dict[str, int]:
    return {i["library"]: i["count"] for i in httpx.get(f"{url}/api/libraries", auth=auth).json()}


@pytest.fixture(scope="module", params=[["--read-only"], ["--share"]], ids=["read-only", "share"])
def closed_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, model_cache: Path,
               tiny_model: Path, data: Path) -> Iterator[App]:
    """app.py with writes closed by its flags (a share link cannot open here: no network, it keeps serving)."""
    work = tmp_path_factory.mktemp("closed")
    env = app_env(work, model_cache)
    ingest_before_serving(env, data)
    with App(env, request.param, log=work / "app.log") as app:
        yield app


def test_every_write_path_is_refused_when_closed(closed_app: App, data: Path) -> None:
    url = closed_app.url
    before = libraries(url)
    assert before == {"shapes": 18}
    with httpx.Client(base_url=url) as http:
        for path in (str(data / "dataset"), str(data / "pictures")):
            refused = http.post("/api/ingest", json={"path": path, "split": "valid", "library": "intruder"})
            assert refused.status_code == 403 and "write actions are disabled" in refused.json()["detail"]
        assert http.delete("/api/libraries/shapes").status_code == 403

    client = Client(url, verbose=False)
    try:
        attempts = {
            "dataset": ("/ingest", (SOURCE_DATASET, str(data / "dataset"), "valid", "", None, "intruder")),
            "upload": ("/ingest", (SOURCE_UPLOAD, "", None, "", [handle_file(str(data / "pictures" / "0.jpg"))],
                                   "intruder")),
            "drop": ("/drop", ("shapes",)),
        }
        for what, (api_name, args) in attempts.items():
            with pytest.raises(Exception, match="disabled") as refused:
                client.predict(*args, api_name=api_name)
            assert "disabled" in str(refused.value), what
        gallery, _ = client.predict("红色的圆形", 3, "shapes", api_name="/search")  # searching stays open
        assert len(gallery) == 3
    finally:
        client.close()
    assert libraries(url) == before
    assert closed_app.alive()


def test_the_write_endpoints_are_all_named_and_guarded(closed_app: App) -> None:
    info = httpx.get(f"{closed_app.url}/gradio_api/info").json()
    named = set(info["named_endpoints"])
    assert {"/search", "/search_image", "/more_like_this", "/ingest", "/drop", "/libraries"} <= named
    # every other event is private: callable by nobody from outside, so no unnamed door to a write
    assert not info.get("unnamed_endpoints")


@pytest.fixture(scope="module")
def private_app(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, tiny_model: Path,
                data: Path) -> Iterator[App]:
    """app.py --auth alice:wonderland."""
    work = tmp_path_factory.mktemp("private")
    env = app_env(work, model_cache)
    ingest_before_serving(env, data)
    with App(env, ["--auth", ":".join(USER)], log=work / "app.log") as app:
        yield app


def test_with_auth_every_route_needs_a_login(private_app: App, data: Path) -> None:
    with httpx.Client(base_url=private_app.url) as http:
        hits = http.post("/api/search", json={"text": "红色的圆形", "top_k": 2}, auth=USER)
        assert hits.status_code == 200
        image = hits.json()[0]["url"]
        doors = [("GET", image, None), ("GET", "/api/libraries", None),
                 ("POST", "/api/search", {"text": "红色的圆形"}),
                 ("POST", "/api/ingest", {"path": str(data / "dataset"), "split": "valid", "library": "x"}),
                 ("DELETE", "/api/libraries/shapes", None)]
        for method, path, body in doors:
            for auth in (None, ("alice", "wrong"), ("mallory", "wonderland")):
                answer = http.request(method, path, json=body, auth=auth)
                assert answer.status_code == 401, (method, path, auth, answer.status_code)
        assert http.get(image, auth=USER).status_code == 200
        # the UI's own doors: config, API info, uploads and queue are behind the login page
        for method, path in (("GET", "/config"), ("GET", "/gradio_api/info"), ("POST", "/gradio_api/upload"),
                             ("POST", "/gradio_api/queue/join"), ("POST", "/gradio_api/call/search")):
            answer = http.request(method, path, files={"files": ("a.jpg", b"x")} if "upload" in path else None)
            assert answer.status_code in (401, 403), (path, answer.status_code)
    client = Client(private_app.url, auth=USER, verbose=False)
    try:  # a logged-in user may write
        _, table = client.predict("shapes", api_name="/drop")
        assert table["data"] == []
    finally:
        client.close()


@pytest.fixture(scope="module")
def open_app(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, tiny_model: Path,
             data: Path) -> Iterator[App]:
    """app.py with its defaults: localhost only, writes open."""
    work = tmp_path_factory.mktemp("open")
    env = app_env(work, model_cache)
    ingest_before_serving(env, data)
    with App(env, log=work / "app.log") as app:
        yield app


def test_urls_never_reach_outside_the_stores(open_app: App, tmp_path_factory: pytest.TempPathFactory) -> None:
    settings_db = open_app.env["SEARCHCORE_DB_URL"]
    secret = tmp_path_factory.mktemp("secret") / "secret.txt"
    secret.write_text("do not serve")
    with httpx.Client(base_url=open_app.url) as http:
        for image_id in ("../../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2fimages.db", "1/../2",
                         str(2**63), str(2**64 + 1), "9" * 400, "-1", "0x10", "1e3", " 1"):
            answer = http.get(f"/api/images/shapes/{image_id}")
            assert answer.status_code in (400, 404), (image_id, answer.status_code)
            assert b"root:" not in answer.content
        for library in ("..", "../shapes", "shapes%2F..", "名字", "a" * 65):
            assert http.get(f"/api/images/{library}/1000").status_code in (400, 404), library
        for path in (f"/gradio_api/file={secret}", "/gradio_api/file=/etc/passwd", f"/gradio_api/file={settings_db}",
                     "/gradio_api/file=../../../../etc/passwd", f"/file={secret}", "/gradio_api/file/etc/passwd"):
            answer = http.get(path)
            assert answer.status_code in (403, 404), (path, answer.status_code)
            assert b"do not serve" not in answer.content and b"root:" not in answer.content
        # Gradio's developer and monitoring routes are off
        for method, path, body in (("GET", "/gradio_api/monitoring", None),
                                   ("POST", "/gradio_api/vibe-edit", {"prompt": "add a button"}),
                                   ("POST", "/gradio_api/vibe-code", {"code": "import os"}),
                                   ("GET", "/gradio_api/profiling/traces", None),
                                   ("GET", "/gradio_api/run-history/buckets", None)):
            assert http.request(method, path, json=body).status_code in (401, 403, 404, 405), path


def test_upload_size_and_count_limits(open_app: App, data: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes((data / "pictures" / "0.jpg").read_bytes() + b"\0" * (MAX_UPLOAD_BYTES + 1))
    with httpx.Client(base_url=open_app.url, timeout=60) as http:
        answer = http.post("/gradio_api/upload", files={"files": ("big.jpg", big.read_bytes(), "image/jpeg")})
        assert answer.status_code == 413, answer.status_code  # refused by Gradio before our handlers run
    client = Client(open_app.url, verbose=False)
    try:
        many = [handle_file(str(data / "pictures" / "0.jpg"))] * (MAX_UPLOAD_FILES + 1)
        summary, _ = client.predict(SOURCE_UPLOAD, "", None, "", many, "uploaded", api_name="/ingest")
        assert f"over the limit of {MAX_UPLOAD_FILES}" in summary
        assert "uploaded" not in libraries(open_app.url)
        with pytest.raises(Exception):  # noqa: B017 - gradio_client raises its own error for a 413
            client.predict(handle_file(str(big)), 5, "shapes", api_name="/search_image")
        summary, _ = client.predict(SOURCE_UPLOAD, "", None, "",
                                    [handle_file(str(data / "pictures" / "0.jpg"))], "uploaded", api_name="/ingest")
        assert "1 added" in summary  # within the limits, an upload works
    finally:
        client.close()


def test_app_refuses_a_bad_library_flag() -> None:
    done = subprocess.run([sys.executable, "app.py", "--library", "../x"], cwd=Path(__file__).parents[2],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "invalid library name" in done.stderr and "Traceback" not in done.stderr
