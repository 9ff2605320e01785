"""A watched folder: while the watcher (in the app, or `searchcore watch` on a Milvus server) runs, the library
holds exactly the folder's images; added files become searchable and deleted ones disappear from both stores."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from demo.shapes import draw
from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.errors import LibraryError
from searchcore.jobs.watch import FolderWatcher
from searchcore.models.encoder import Encoder
from searchcore.sources.datasets import folder_image_id
from tests.support import ROOT, App, run_cli, settings_env, stop_process, wait_until

LIBRARY = "photos"


def picture(path: Path, color: str, shape: str, seed: int) -> int:
    """Draw a shape into path (folders made as needed); its image id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draw(color, shape, random.Random(seed)).save(path)
    return folder_image_id(path.read_bytes())


def held(engine: Engine, library: str = LIBRARY) -> tuple[set[int], set[int]]:
    """The image ids with a vector, and the image ids with stored bytes."""
    vectors = set(engine.vectors.ids(library)) if engine.vectors.meta(library) is not None else set()
    return vectors, set(engine.images.ids(library))


def wait_for(engine: Engine, ids: set[int], what: str) -> None:
    """Wait until both stores hold exactly these ids."""
    wait_until(lambda: held(engine) == (ids, ids), what, timeout=60)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "photos"
    path.mkdir()
    return path


@pytest.fixture
def watching(engine: Engine, folder: Path) -> Iterator[FolderWatcher]:
    """A watcher with a short debounce on the folder, for library `photos`."""
    watcher = FolderWatcher(engine, folder, LIBRARY, debounce=0.3)
    yield watcher
    watcher.stop()


def test_added_changed_and_deleted_files_follow_the_folder(engine: Engine, folder: Path,
                                                           watching: FolderWatcher) -> None:
    first = picture(folder / "a.png", "红色", "圆形", 1)
    watching.start()
    wait_for(engine, {first}, "the first re-scan to ingest a.png")

    second = picture(folder / "trip" / "b.jpg", "蓝色", "正方形", 2)
    wait_for(engine, {first, second}, "the new trip/b.jpg to be ingested")
    assert watching.last_change is not None and watching.last_report is not None and watching.last_error is None

    redrawn = picture(folder / "a.png", "绿色", "三角形", 3)
    wait_for(engine, {redrawn, second}, "the redrawn a.png to replace its old image")

    (folder / "a.png").unlink()
    wait_for(engine, {second}, "the deleted a.png to leave both stores")


def test_a_folder_moved_away_takes_its_images_with_it(engine: Engine, folder: Path, tmp_path: Path,
                                                      watching: FolderWatcher) -> None:
    kept = picture(folder / "a.png", "红色", "圆形", 1)
    inside = {picture(folder / "trip" / f"{n}.png", "紫色", "正方形", 10 + n) for n in range(3)}
    watching.start()
    wait_for(engine, {kept} | inside, "the first re-scan")

    shutil.move(folder / "trip", tmp_path / "elsewhere")  # one event only: the folder's own deletion
    wait_for(engine, {kept}, "the moved-away folder's images to leave both stores")


def test_an_emptied_folder_removes_nothing_and_says_so(engine: Engine, folder: Path,
                                                      watching: FolderWatcher) -> None:
    # An empty root is what an unmounted drive looks like: the watcher keeps the pictures and waits.
    only = picture(folder / "a.png", "红色", "圆形", 1)
    watching.start()
    wait_for(engine, {only}, "the first re-scan")

    (folder / "a.png").unlink()
    wait_until(lambda: watching.waiting is not None, "the watcher to say it waits", timeout=60)
    assert "is the drive mounted?" in str(watching.waiting)
    assert held(engine) == ({only}, {only})


def test_a_root_removed_then_restored_removes_nothing(engine: Engine, folder: Path, tmp_path: Path) -> None:
    kept = {picture(folder / f"{n}.png", "红色", "圆形", n) for n in range(3)}
    watching = FolderWatcher(engine, folder, LIBRARY, debounce=0.3, poll=0.5)
    watching.start()
    try:
        wait_for(engine, kept, "the first re-scan")
        shutil.move(folder, tmp_path / "unplugged")  # the drive goes away, mount point and all
        wait_until(lambda: watching.waiting is not None, "the watcher to wait for its folder", timeout=60)
        assert held(engine) == (kept, kept)

        shutil.move(tmp_path / "unplugged", folder)  # the drive is back
        wait_until(lambda: watching.waiting is None, "the watcher to resume", timeout=60)
        assert held(engine) == (kept, kept)
        added = picture(folder / "new.png", "蓝色", "正方形", 7)
        wait_for(engine, kept | {added}, "a picture added after the return to be ingested")
    finally:
        watching.stop()


def test_a_failing_rescan_is_reported_and_tried_again_at_the_next_change(engine: Engine, folder: Path,
                                                                         watching: FolderWatcher) -> None:
    engine.vectors.open_library(LIBRARY, "another-model", 16, create=True)  # ingest into it must fail
    first = picture(folder / "a.png", "红色", "圆形", 1)
    watching.start()
    wait_until(lambda: watching.last_error is not None, "the first re-scan to fail", timeout=60)
    assert "another-model" in str(watching.last_error)

    engine.drop(LIBRARY)
    second = picture(folder / "b.png", "蓝色", "圆形", 2)
    wait_for(engine, {first, second}, "the next change to re-scan the whole folder")
    # The re-scan clears its error once it has finished, a moment after its pictures become searchable.
    wait_until(lambda: watching.last_error is None, "the successful re-scan to clear the error", timeout=60)


def test_watching_a_missing_folder_is_an_error(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="not a folder"):
        FolderWatcher(engine, tmp_path / "nowhere", LIBRARY).start()


# The app, and the command on a Milvus server


def api_ids(app: App, text: str = "红色的圆形") -> set[int]:
    """The image ids a search through the app's JSON API returns (none while the library does not exist)."""
    answer = httpx.post(f"{app.url}/api/search", json={"text": text, "top_k": 100}, timeout=30)
    if answer.status_code == 404:
        return set()
    answer.raise_for_status()
    return {hit["image_id"] for hit in answer.json()}


def test_the_app_with_watch_makes_new_files_searchable_and_forgets_deleted_ones(settings: Settings,
                                                                                tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    kept = picture(folder / "kept.png", "蓝色", "正方形", 1)
    with App(settings_env(settings), ["--watch", str(folder)], log=tmp_path / "app.log") as app:
        wait_until(lambda: api_ids(app) == {kept}, "the app's first re-scan to make kept.png searchable")

        added = picture(folder / "new" / "added.png", "红色", "圆形", 2)
        wait_until(lambda: api_ids(app) == {kept, added}, "added.png to be searchable")

        (folder / "new" / "added.png").unlink()
        wait_until(lambda: api_ids(app) == {kept}, "added.png to be gone from the results")
        assert app.alive(), app.log()[-3000:]
    engine = Engine(settings)
    try:
        assert engine.info().count == 1 and engine.info().images == 1
    finally:
        engine.close()


def test_the_watch_command_refuses_a_lite_file(settings: Settings, folder: Path) -> None:
    done = run_cli("watch", str(folder), env=settings_env(settings), timeout=120)

    assert done.returncode == 1
    assert "searchcore watch needs a Milvus server URI" in done.stderr
    assert f"python app.py --watch {folder}" in done.stderr


@pytest.mark.slow
def test_the_watch_command_on_a_milvus_server_follows_the_folder(settings: Settings, milvus_server: str,
                                                                 torch_encoder: Encoder, folder: Path) -> None:
    server = settings.replace(milvus_uri=milvus_server, library=f"watch_{uuid.uuid4().hex[:8]}")
    first = picture(folder / "a.png", "红色", "圆形", 1)
    proc = subprocess.Popen([sys.executable, "-m", "searchcore.cli", "watch", str(folder), "--debounce", "0.3"],
                            cwd=ROOT, env={**os.environ, **settings_env(server)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    engine = Engine(server, encoder=torch_encoder)  # another process's view of the same stores
    try:
        wait_until(lambda: held(engine, server.library) == ({first}, {first}), "the first re-scan", timeout=180)
        second = picture(folder / "b.png", "蓝色", "正方形", 2)
        wait_until(lambda: held(engine, server.library) == ({first, second}, {first, second}), "b.png", timeout=60)
        (folder / "a.png").unlink()
        wait_until(lambda: held(engine, server.library) == ({second}, {second}), "a.png to go", timeout=60)

        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        summaries = [line for line in out.splitlines() if line.startswith(f"library {server.library}:")]
        assert len(summaries) >= 3, out  # one line per re-scan: the first, the addition, the deletion
    finally:
        stop_process(proc, grace=10)
        with contextlib.suppress(LibraryError):
            engine.drop(server.library)
        engine.close()
