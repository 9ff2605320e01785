"""`reindex` moves a library to another model (here a second tiny checkpoint of another dimension) beside the
live collection, which keeps answering with the old model until the library switches in one step."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from demo.shapes import CLASSES, draw
from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.errors import LibraryError
from searchcore.models.encoder import Encoder, load_encoder
from searchcore.search import SearchResult
from searchcore.stores import snapshot
from searchcore.stores.exact_copy import SCORE_TOLERANCE
from searchcore.stores.vectors import Hit
from searchcore.web.auth import Access
from tests.indexing.test_video_ingest import WALK, shapes_video
from tests.support import Served, run_cli, settings_env, wait_until, write_photo_folders, write_tiny_checkpoint

QUERIES = ("红色的圆形", "蓝色的方形", "绿色的三角形", "黄色的星形")
DIM_B = 48


@pytest.fixture(scope="session")
def model_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Model B: the tiny model's towers with 48-d projections (model A, demo/tiny_clip.pt, has 64)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("model_b") / "tiny_b.pt", DIM_B, seed=3)


@pytest.fixture(scope="session")
def encoder_b(model_b: Path, model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    return load_encoder(Settings(model=str(model_b), model_dir=str(model_cache), device="cpu", backend="torch",
                                 precision="fp32"))


@pytest.fixture
def fresh_b(settings: Settings, model_b: Path, encoder_b: Encoder, tmp_path: Path) -> Iterator[Engine]:
    """An engine whose libraries are ingested with model B from the start, on stores of its own."""
    folder = tmp_path / "fresh"
    folder.mkdir()
    eng = Engine(settings.replace(model=str(model_b), milvus_uri=str(folder / "milvus.db"),
                                  db_url=str(folder / "images.db")), encoder=encoder_b)
    yield eng
    eng.close()


def ranking(results: list[SearchResult]) -> list[tuple[int, float]]:
    return [(r.image_id, r.score) for r in results]


def assert_same_ranking(got: list[Hit], want: list[Hit]) -> None:
    """Same ids in the same order, scores within the exact copy's tolerance; images of one score (a video's frames
    of one scene) may come in either order among themselves, and the last such group may be cut at top-k."""
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.score == pytest.approx(b.score, abs=SCORE_TOLERANCE * 10)
    groups: list[list[int]] = []
    for n, hit in enumerate(want):
        if n and abs(hit.score - want[n - 1].score) <= SCORE_TOLERANCE * 10:
            groups[-1].append(n)
        else:
            groups.append([n])
    for group in groups[:-1]:
        assert {got[n].image_id for n in group} == {want[n].image_id for n in group}


def assert_equals_fresh(engine: Engine, fresh: Engine, library: str | None = None) -> None:
    """Every query ranks the library's images as a library ingested with model B from the start does."""
    for got, want in zip(engine.rank_texts(QUERIES, 20, library, mode="semantic"),
                         fresh.rank_texts(QUERIES, 20, library, mode="semantic")):
        assert_same_ranking(got, want)


def test_reindex_moves_a_dataset_library_to_another_model_and_dimension(
        engine: Engine, dataset: Path, model_b: Path, encoder_b: Encoder, fresh_b: Engine) -> None:
    engine.ingest(dataset, split="train")
    before = {q: ranking(engine.search_text(q, 10, mode="semantic")) for q in QUERIES}
    words = ranking(engine.search_text("红色", 10, mode="keyword"))
    assert words
    during: list[dict[str, list[tuple[int, float]]]] = []

    def search_meanwhile(done: int, total: int | None) -> None:
        if done and not during:  # some pictures are in the new collection: searches still use the old one
            during.append({q: ranking(engine.search_text(q, 10, mode="semantic")) for q in QUERIES})

    report = engine.reindex(str(model_b), progress=search_meanwhile)

    assert during == [before]
    assert report.switched and report.encoded == report.from_store == report.images == 36
    assert (report.old_model, report.model, report.dim) == (engine.encoder.name, encoder_b.name, DIM_B)
    meta = engine.vectors.meta(engine.settings.library)
    assert meta is not None and (meta.model, meta.dim) == (encoder_b.name, DIM_B)
    assert engine.check().consistent
    assert [m.library for m in engine.vectors.libraries()] == ["default"]
    assert engine.vectors.builds("default") == {}, "the old collection is dropped"
    assert ranking(engine.search_text("红色", 10, mode="keyword")) == words, "the keyword index is kept"
    fresh_b.ingest(dataset, split="train")
    assert_equals_fresh(engine, fresh_b)
    again = engine.reindex(str(model_b))
    assert again.already and again.encoded == 0


def test_a_library_keeps_its_model_beside_one_built_with_another(
        engine: Engine, dataset: Path, model_b: Path, encoder_b: Encoder, fresh_b: Engine) -> None:
    engine.ingest(dataset, split="train", library="on_a")
    engine.ingest(dataset, split="train", library="on_b")
    engine.reindex(str(model_b), "on_b")
    fresh_b.ingest(dataset, split="train", library="on_b")
    infos = {i.library: (i.model, i.dim) for i in engine.libraries()}
    assert infos == {"on_a": (engine.encoder.name, 64), "on_b": (encoder_b.name, DIM_B)}
    a = engine.search_text("红色的圆形", 5, "on_a", mode="semantic")
    b = engine.search_text("红色的圆形", 5, "on_b", mode="semantic")
    assert ranking(a) != ranking(b)
    assert_equals_fresh(engine, fresh_b, "on_b")


def test_a_library_whose_model_is_gone_is_refused_naming_it_and_reindex(
        settings: Settings, dataset: Path, model_b: Path, encoder_b: Encoder, tmp_path: Path,
        torch_encoder: Encoder) -> None:
    gone = shutil.copy(model_b, tmp_path / "gone_b.pt")
    with Engine(settings.replace(model=str(gone))) as engine_b:
        engine_b.ingest(dataset, split="train", library="lost")
    Path(gone).unlink()
    with Engine(settings, encoder=torch_encoder) as engine:
        with pytest.raises(LibraryError, match=r"built with model gone_b@.*cannot be loaded.*searchcore reindex "
                                               r"--library lost --model"):
            engine.search_text("红色的圆形", 5, "lost")
        report = engine.reindex(str(settings.model), "lost")  # its pictures are all in the image store
        assert report.switched and report.from_store == 36
        assert len(engine.search_text("红色的圆形", 5, "lost")) == 5


@pytest.fixture
def album(tmp_path: Path) -> Path:
    """A photo folder (24 pictures in two albums) with a video in it."""
    root = write_photo_folders(tmp_path / "album")
    shapes_video(root / "videos" / "walk.mp4", WALK, 24)
    return root


def test_reindex_reads_a_folder_from_its_files_and_its_video_again(
        engine: Engine, album: Path, model_b: Path, fresh_b: Engine) -> None:
    engine.ingest(album)
    frames = engine.info().frames
    assert frames > 0

    report = engine.reindex(str(model_b))

    assert (report.from_originals, report.from_videos) == (24, frames)
    assert report.from_thumbnails == report.from_frame_thumbnails == report.from_store == 0
    assert engine.check().consistent
    fresh_b.ingest(album)
    assert_equals_fresh(engine, fresh_b)
    moments = [r for r in engine.search_text("蓝色的正方形", 30, mode="semantic") if r.video is not None]
    assert moments, "the video's frames are searchable with the new model"


def test_a_gone_original_and_a_changed_video_are_encoded_from_their_thumbnails(
        engine: Engine, album: Path, model_b: Path) -> None:
    engine.ingest(album)
    frames = engine.info().frames
    gone = next((album / "2023/海边").glob("*.png"))
    gone_id = engine.images.files("default", str(album.resolve()))[gone.relative_to(album).as_posix()].image_id
    gone.unlink()
    video = album / "videos" / "walk.mp4"
    os.utime(video, (1e9, 1e9))  # the video file is no longer the one indexed

    report = engine.reindex(str(model_b))

    assert (report.from_originals, report.from_thumbnails) == (23, 1)
    assert (report.from_videos, report.from_frame_thumbnails) == (0, frames)
    assert report.switched
    check = engine.check()
    assert check.missing_vectors == check.orphan_vectors == []
    assert gone_id in {r.image_id for r in engine.search_text("红色的圆形", 50, mode="semantic")}


def upload_files(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    files = []
    for n in range(count):
        cls = CLASSES[n % len(CLASSES)]
        path = folder / f"upload{n}.jpg"
        draw(*cls, random.Random(n), (80 + n, 90)).save(path, "JPEG")
        files.append(path)
    return files


def test_searches_answer_with_the_old_model_while_a_reindex_of_uploads_runs(
        engine: Engine, tmp_path: Path, model_b: Path, encoder_b: Encoder, fresh_b: Engine) -> None:
    files = upload_files(tmp_path / "uploads", 20)
    engine.ingest_uploads(files, library="uploads")
    before = {q: ranking(engine.search_text(q, 10, "uploads", mode="semantic")) for q in QUERIES}
    half_way, go_on = threading.Event(), threading.Event()

    def hold(done: int, total: int | None) -> None:
        if done >= 8 and not half_way.is_set():
            half_way.set()
            go_on.wait(60)

    status = engine.start_reindex(str(model_b), "uploads", progress=hold)
    assert half_way.wait(60)
    try:
        assert status.state == "encoding" and 8 <= status.done < status.total == 20
        assert "reindex of library uploads" in status.line() and "searches use" in status.line()
        during = {q: ranking(engine.search_text(q, 10, "uploads", mode="semantic")) for q in QUERIES}
        assert during == before
    finally:
        go_on.set()
    wait_until(lambda: status.state in ("done", "failed"), "the reindex to end")
    assert status.state == "done" and status.report is not None, status.error
    assert status.report.from_store == 20
    fresh_b.ingest_uploads(files, library="uploads")
    assert_equals_fresh(engine, fresh_b, "uploads")
    assert engine.reindex_status("uploads") is status


KILLED = Path(__file__).parents[1] / "ingest_killed_at.py"


@pytest.mark.parametrize("point", ["build:3", "switch:1", "switched:1"])
def test_a_reindex_killed_at_any_point_is_finished_by_the_next(
        settings: Settings, torch_encoder: Encoder, dataset: Path, model_b: Path, encoder_b: Encoder,
        fresh_b: Engine, point: str) -> None:
    env = {**settings_env(settings), "SEARCHCORE_BATCH_SIZE": "4", "SEARCHCORE_WORKERS": "1"}
    with Engine(settings, encoder=torch_encoder) as engine:
        engine.ingest(dataset, split="train")
        before = engine.rank_texts(QUERIES, 10, mode="semantic")
        old = engine.vectors.live_collection("default")

    killed = subprocess.run([sys.executable, str(KILLED), point, "--reindex", str(model_b)], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]

    with Engine(settings, encoder=torch_encoder) as engine:
        meta = engine.vectors.meta(engine.settings.library)
        assert meta is not None
        if point == "switched:1":  # the switch is the one step: past it, the library is on model B
            assert meta.model == encoder_b.name and old in engine.vectors.builds("default")
        else:
            assert meta.model == torch_encoder.name and meta.collection == old
            assert engine.rank_texts(QUERIES, 10, mode="semantic") == before
        assert engine.check().consistent
        built = {name: len(list(engine.vectors.collection_ids(name))) for name in engine.vectors.builds("default")}

    again = run_cli("reindex", "--model", str(model_b), "--json", env=env)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    if point == "switched:1":
        assert report["already"] and report["dropped"] == [old] and report["encoded"] == 0
    else:
        assert report["resumed"] and report["switched"] and report["dropped"] == [old]
        assert report["kept"] == sum(built.values()) and report["encoded"] == 36 - report["kept"]
        # nothing written before the kill is encoded again: two batches of four, or everything
        assert report["kept"] == (8 if point == "build:3" else 36)

    with Engine(settings, encoder=torch_encoder) as engine:
        ids = list(engine.vectors.ids("default"))
        assert len(ids) == len(set(ids)) == engine.vectors.count(engine.settings.library) == 36
        assert engine.check().consistent and engine.vectors.builds("default") == {}
        fresh_b.ingest(dataset, split="train")
        assert_equals_fresh(engine, fresh_b)


def test_reindex_on_a_milvus_server_and_mariadb_is_followed_by_another_reader(
        server_settings: Settings, torch_encoder: Encoder, dataset: Path, model_b: Path, encoder_b: Encoder,
        fresh_b: Engine) -> None:
    library = server_settings.library
    with Engine(server_settings, encoder=torch_encoder) as writer, \
            Engine(server_settings, encoder=torch_encoder) as reader:
        writer.ingest(dataset, split="train")
        before = reader.rank_texts(QUERIES, 10, mode="semantic")  # the reader knows the old collection now
        report = writer.reindex(str(model_b))
        assert report.switched and report.from_store == 36
        assert writer.check().consistent and writer.vectors.builds(library) == {}
        after = reader.search_text("红色的圆形", 10, mode="semantic")  # its old collection is gone: it follows
        assert reader.vectors.meta(reader.settings.library) == writer.vectors.meta(writer.settings.library)
        assert reader.vectors.meta(reader.settings.library).dim == DIM_B  # type: ignore[union-attr]
        fresh_b.ingest(dataset, split="train", library=library)
        want = fresh_b.search_text("红色的圆形", 10, library, mode="semantic")
        assert [r.image_id for r in after] == [r.image_id for r in want]
        assert [r.score for r in after] == pytest.approx([r.score for r in want], abs=1e-5)
        assert reader.rank_texts(QUERIES, 10, mode="semantic") != before
        writer.drop()


def test_the_exact_copy_and_the_search_snapshot_follow_the_switch(
        settings: Settings, torch_encoder: Encoder, dataset: Path, model_b: Path) -> None:
    env = settings_env(settings)
    with Engine(settings, encoder=torch_encoder) as engine:
        engine.ingest(dataset, split="train")
        assert engine.vectors.wait_for_copy("default")  # type: ignore[attr-defined]
    assert snapshot.load(settings.milvus_uri, "default") is not None  # model A's, saved on close

    with Engine(settings, encoder=torch_encoder) as engine:
        engine.reindex(str(model_b))
        assert snapshot.load(settings.milvus_uri, "default") is None
        assert engine.vectors.wait_for_copy("default")  # type: ignore[attr-defined]
        assert engine.vectors.check_copy("default") is None  # the copy holds model B's vectors
        want = engine.search_text("红色的圆形", 10, mode="semantic")
    saved = snapshot.load(settings.milvus_uri, "default")
    assert saved is not None and saved.copy.dim == DIM_B and saved.meta["dim"] == DIM_B

    found = run_cli("search", "红色的圆形", "--mode", "semantic", "--json", env=env)  # from the new snapshot
    assert found.returncode == 0, found.stderr
    got = json.loads(found.stdout)
    assert [r["image_id"] for r in got] == [r.image_id for r in want]


def test_the_api_starts_a_reindex_and_shows_its_progress(engine: Engine, dataset: Path, model_b: Path,
                                                        encoder_b: Encoder) -> None:
    engine.ingest(dataset, split="train")
    served = Served(engine, Access())
    try:
        with httpx.Client(base_url=served.url, timeout=60) as client:
            assert client.get("/api/libraries/default/reindex").json()["kind"] == "reindex_none"
            started = client.post("/api/libraries/default/reindex", json={"model": str(model_b)})
            assert started.status_code == 202, started.text
            assert started.json()["library"] == "default" and "line" in started.json()
            wait_until(lambda: client.get("/api/libraries/default/reindex").json()["state"] in ("done", "failed"),
                       "the reindex to end")
            done = client.get("/api/libraries/default/reindex").json()
            assert done["state"] == "done", done
            assert done["report"]["switched"] and done["report"]["from_store"] == 36
            assert done["model"] == encoder_b.name and done["old_model"] == engine.encoder.name
            listed = {i["library"]: (i["model"], i["dim"]) for i in client.get("/api/libraries").json()}
            assert listed == {"default": (encoder_b.name, DIM_B)}
            hits = client.post("/api/search", json={"text": "红色的圆形", "top_k": 5}).json()
            assert len(hits) == 5
            refused = client.post("/api/libraries/default/reindex", json={"model": str(model_b.with_name("no.pt"))})
            assert refused.status_code == 400 and refused.json()["kind"] == "model_unknown"
    finally:
        served.stop()

