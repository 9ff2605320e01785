"""The Gradio handlers, called directly, over the tiny model and real embedded stores."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pymysql
import pytest
from PIL import Image

from demo.shapes import draw
from searchcore.auth import Access, read_credentials
from searchcore.engine import Engine
from searchcore.image_store import MySQLImageStore
from searchcore.ui import SOURCE_DATASET, SOURCE_UPLOAD, SearchApp
from tests.support import MARIADB


@pytest.fixture
def app(engine: Engine, dataset: Path) -> SearchApp:
    """Handlers over a library holding the dataset's train split (36 images, 2 per class)."""
    engine.ingest(dataset, split="train")
    return SearchApp(engine)


def captions(gallery: list[tuple[Image.Image, str]]) -> list[str]:
    return [text for _, text in gallery]


def test_search_shows_red_circles_first_as_images_in_memory(app: SearchApp) -> None:
    gallery, state, status = app.search("红色的圆形", 12, None)
    assert len(gallery) == 12
    assert all(text.endswith("红色的圆形") for text in captions(gallery)[:2]), captions(gallery)
    assert captions(gallery)[0].startswith("#1 · ")
    assert all(isinstance(picture, Image.Image) for picture, _ in gallery)
    assert state is not None and [h["rank"] for h in state["hits"]] == list(range(1, 13))
    assert "12 results" in status


def test_empty_query_is_a_friendly_warning(app: SearchApp) -> None:
    with pytest.warns(UserWarning, match="empty"):
        gallery, state, _ = app.search("   ", 12, None)
    assert gallery == [] and state is None


def test_missing_library_is_a_friendly_warning(app: SearchApp) -> None:
    with pytest.warns(UserWarning, match="does not exist"):
        gallery, _, _ = app.search("红色的圆形", 12, "nosuch")
    assert gallery == []


def test_clicking_a_result_shows_it_and_more_like_this_finds_it_first(app: SearchApp) -> None:
    _, state, _ = app.search("蓝色的正方形", 5, None)
    picture, meta, image_id, _ = app.select(state, gr.SelectData(None, {"index": 1, "value": None}))
    assert image_id == str(state["hits"][1]["image_id"])
    assert isinstance(picture, Image.Image) and picture.size == (96, 96)
    assert "蓝色的正方形" in meta
    gallery, _, _ = app.more_like_this(image_id, 3, None)
    assert captions(gallery)[0].split(" · ")[2] == image_id


def test_search_by_image_finds_the_same_kind_of_picture(app: SearchApp, tmp_path: Path) -> None:
    import random

    query = tmp_path / "query.png"
    draw("绿色", "三角形", random.Random(99)).save(query)
    gallery, _, _ = app.search_image(str(query), 3, None)
    assert captions(gallery)[0].endswith("绿色的三角形"), captions(gallery)


def test_ingest_reports_added_then_already_present(engine: Engine, dataset: Path) -> None:
    app = SearchApp(engine)
    first, table = app.ingest(SOURCE_DATASET, str(dataset), "valid", "", None, "shapes")
    assert "90 added, 0 already present, 0 bad" in first
    assert table[0][:2] == ["shapes", 90]
    again, _ = app.ingest(SOURCE_DATASET, str(dataset), "valid", "", None, "shapes")
    assert "0 added, 90 already present" in again
    assert app.splits(str(dataset)).choices == [("train", "train"), ("valid", "valid")]


def test_uploaded_images_are_ingested_and_the_bad_ones_named(engine: Engine, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    for name, color in (("a.png", "红色"), ("b.jpg", "黄色")):
        draw(color, "圆形", random.Random(name)).save(uploads / name)
    (uploads / "broken.png").write_bytes(b"not an image")
    (uploads / "notes.txt").write_text("hello")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))

    text, _ = SearchApp(engine).ingest(SOURCE_UPLOAD, "", None, "", sorted(str(p) for p in uploads.iterdir()),
                                       "uploads")
    assert "2 added, 0 already present, 2 bad" in text
    assert "broken.png" in text and "notes.txt" in text
    assert list(scratch.iterdir()) == [], "the per-request upload folder must be removed"


def test_read_only_refuses_ingest_and_drop(engine: Engine, dataset: Path) -> None:
    engine.ingest(dataset, split="train")
    for access in (Access(read_only=True), Access(share=True), Access(users=(("u", "p"),), read_only=True)):
        app = SearchApp(engine, access)
        with pytest.raises(gr.Error, match="disabled"):
            app.ingest(SOURCE_DATASET, str(dataset), "valid", "", None, "other")
        with pytest.raises(gr.Error, match="disabled"):
            app.drop("default")
        with pytest.raises(gr.Error, match="disabled"):
            app.ask_drop("default")
    assert [info.library for info in engine.libraries()] == ["default"]
    assert engine.info().count == 36
    assert Access(users=(("u", "p"),), share=True).refusal is None


def test_drop_removes_the_library(app: SearchApp) -> None:
    message, table = app.drop("default")
    assert "Dropped" in message and table == []


def test_credentials_from_flags_and_files(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("# admins\nalice:s3cret:with:colons\n\nbob:pw\n")
    pairs = read_credentials(["carol:x", f"@{users}"])
    assert pairs == (("carol", "x"), ("alice", "s3cret:with:colons"), ("bob", "pw"))
    assert Access(users=pairs).allows("bob", "pw") and not Access(users=pairs).allows("bob", "x")
    with pytest.raises(Exception, match="expected user:password"):
        read_credentials(["nopassword"])


def test_a_lost_image_database_is_a_warning_and_the_app_keeps_serving(settings, torch_encoder, dataset: Path,
                                                                      doomed_database: str) -> None:
    images = MySQLImageStore(f"mysql://root@127.0.0.1:3306/{doomed_database}")
    engine = Engine(settings, encoder=torch_encoder, images=images)
    try:
        engine.ingest(dataset, split="train")
        app = SearchApp(engine)
        assert len(app.search("红色的圆形", 3, None)[0]) == 3
        conn = pymysql.connect(**MARIADB, autocommit=True)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE `{doomed_database}`")
        conn.close()
        for _ in range(2):
            with pytest.warns(UserWarning, match="image database"):
                gallery, _, _ = app.search("红色的圆形", 3, None)
            assert gallery == []
        assert 'searchcore_backend_errors_total{operation="search"} 2.0' in app.metrics.render().decode()
    finally:
        engine.close()
