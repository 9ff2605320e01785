"""Search answers with ids, scores and captions without reading image bytes; only what shows pictures reads them.

The image store is the real SQLite one, watched two ways: which ids each get_many call (the store's one method
that returns bytes) asks for, and, from SQLite itself, whether any statement at all reads the `data` column.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from fastapi.testclient import TestClient

from demo.sample_data import image_classes
from searchcore import cli
from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.models.encoder import Encoder
from searchcore.stores.image_db import ImageDb, SQLiteImageStore, open_image_store
from searchcore.stores.images import ImageMeta, StoredImage
from searchcore.stores.sql import TABLE
from searchcore.web.api import create_app
from searchcore.web.ui.layout import SearchApp
from tests.support import CliRun, tiny_settings

QUERY = "红色的圆形"


class WatchedImageStore:
    """The real image store, recording the ids of each byte read and any SQL that touches the bytes column."""

    def __init__(self, store: ImageDb) -> None:
        assert isinstance(store, SQLiteImageStore)
        self.store = store
        self.byte_reads: list[list[int]] = []
        self.data_column_reads = 0
        # SQLite asks the authorizer about every column a statement reads when it prepares it; setting one
        # expires the statements cached so far, so each statement run from now on is seen at least once.
        store._conn.set_authorizer(self._authorize)

    def _authorize(self, action: int, table: str | None, column: str | None, *_: Any) -> int:
        if action == sqlite3.SQLITE_READ and table == TABLE and column == "data":
            self.data_column_reads += 1
        return sqlite3.SQLITE_OK

    def get_many(self, library: str, ids: Sequence[int]) -> dict[int, StoredImage]:
        self.byte_reads.append(list(ids))
        return self.store.get_many(library, ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, torch_encoder: Encoder,
             dataset: Path) -> Settings:
    """Settings whose default library holds the valid split (90 images, 5 per class, one caption each)."""
    settings = tiny_settings(tmp_path_factory.mktemp("no_bytes"), model_cache, backend="torch", precision="fp32")
    engine = Engine(settings, encoder=torch_encoder)
    try:
        engine.ingest(dataset, split="valid")
    finally:
        engine.close()
    return settings


@pytest.fixture
def engine(settings: Settings, torch_encoder: Encoder) -> Iterator[Engine]:
    """An engine over that library whose image store is watched."""
    eng = Engine(settings, encoder=torch_encoder)
    eng.images = WatchedImageStore(eng.images)  # type: ignore[assignment]
    yield eng
    eng.close()


def stored(settings: Settings, ids: list[int]) -> dict[int, StoredImage]:
    """What the image store holds for these ids, read afresh."""
    store = SQLiteImageStore(settings.db_url)
    try:
        return store.get_many(settings.library, ids)
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("mariadb", marks=pytest.mark.server)])
def test_metadata_read_returns_everything_but_the_bytes(backend: str, request: pytest.FixtureRequest,
                                                        tmp_path: Path) -> None:
    store = open_image_store(str(tmp_path / "images.db") if backend == "sqlite"
                             else request.getfixturevalue("mariadb_url"))
    try:
        store.put_many("meta", [StoredImage(1, b"x" * 10, "PNG", 4, 3, "a" * 64, "src:1", ["图片1", "第二个说明"]),
                                StoredImage(9_000_000_000_000, b"y", "JPEG", 1, 2, "b" * 64)])
        assert store.get_meta_many("meta", [1, 9_000_000_000_000, 77]) == {
            1: ImageMeta(1, "PNG", 4, 3, "src:1", ["图片1", "第二个说明"]),
            9_000_000_000_000: ImageMeta(9_000_000_000_000, "JPEG", 1, 2, "", [])}
    finally:
        store.drop("meta")
        store.close()


def test_cli_search_json_reads_no_image_bytes(settings: Settings, dataset: Path, monkeypatch: pytest.MonkeyPatch,
                                              cli_in_process: CliRun) -> None:
    watched: list[WatchedImageStore] = []
    build = cli._engine

    def watched_engine(*args: Any, **kwargs: Any) -> Engine:
        eng = build(*args, **kwargs)
        eng.images = WatchedImageStore(eng.images)  # type: ignore[assignment]
        watched.append(eng.images)  # type: ignore[arg-type]
        return eng

    monkeypatch.setattr(cli, "_engine", watched_engine)
    code, out, _ = cli_in_process(settings, "search", QUERY, "--top-k", "5", "--json")
    assert code == 0
    results = json.loads(out)

    assert [(w.byte_reads, w.data_column_reads) for w in watched] == [([], 0)]
    assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    assert all(set(r) == {"rank", "image_id", "score", "captions", "path", "taken", "text",
                              "similarity", "keyword_score", "media", "video", "text_match", "similar"}
               for r in results)
    assert all(r["media"] == "image" and r["video"] is None for r in results)
    classes = image_classes(dataset, "valid")
    assert all(classes[r["image_id"]] == ("红色", "圆形") for r in results)
    truth = stored(settings, [r["image_id"] for r in results])
    assert {r["image_id"]: r["captions"] for r in results} == {i: s.captions for i, s in truth.items()}
    assert all(r["captions"] == [QUERY] for r in results)


def test_api_search_reads_no_image_bytes_and_the_image_route_reads_one(engine: Engine, settings: Settings,
                                                                       dataset: Path) -> None:
    watched: WatchedImageStore = engine.images  # type: ignore[assignment]
    http = TestClient(create_app(engine))

    found = http.post("/api/search", json={"text": QUERY, "top_k": 5})
    assert found.status_code == 200, found.text
    hits = found.json()
    assert (watched.byte_reads, watched.data_column_reads) == ([], 0)
    classes = image_classes(dataset, "valid")
    assert len(hits) == 5 and all(classes[h["image_id"]] == ("红色", "圆形") for h in hits)
    assert all(h["captions"] == [QUERY] for h in hits)

    truth = stored(settings, [h["image_id"] for h in hits])
    for hit in hits:
        picture = http.get(hit["url"])
        assert picture.status_code == 200 and picture.content == truth[hit["image_id"]].data
    assert watched.byte_reads == [[h["image_id"]] for h in hits]


def test_every_engine_search_reads_no_image_bytes(engine: Engine) -> None:
    watched: WatchedImageStore = engine.images  # type: ignore[assignment]
    by_text = engine.search_text(QUERY, 5)
    by_image = engine.search_image(stored(engine.settings, [by_text[0].image_id])[by_text[0].image_id].data, 5)
    similar = engine.search_similar(by_text[0].image_id, 5)
    assert by_image[0].image_id == similar[0].image_id == by_text[0].image_id
    assert all(r.captions == [QUERY] and r.format for r in by_text + by_image + similar)
    assert (watched.byte_reads, watched.data_column_reads) == ([], 0)


def test_gallery_reads_the_bytes_of_exactly_the_results_it_shows(engine: Engine) -> None:
    watched: WatchedImageStore = engine.images  # type: ignore[assignment]
    app = SearchApp(engine)

    gallery, state, _ = app.search(QUERY, 5, None)
    assert state is not None and len(gallery) == 5
    shown = [h["image_id"] for h in state["hits"]]
    assert watched.byte_reads == [shown], "one read, of the ids in the gallery"
    assert [text.split(" · ")[2] for _, text in gallery] == [str(i) for i in shown]

    picture, _, image_id, _, _ = app.select(state, gr.SelectData(None, {"index": 2, "value": None}))
    assert picture is not None and image_id == str(shown[2])
    assert watched.byte_reads == [shown, [shown[2]]], "the detail view reads the one image it shows"
