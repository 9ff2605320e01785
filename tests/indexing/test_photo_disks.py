"""Photo folders as they are on real disks: names in any encoding, drives that are not mounted, and originals
left where they are (a folder library keeps a thumbnail and the file's path, size, mtime and hash). The migration
of a library built by the previous release is in test_migration_thumbnails.py."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from demo.shapes import CLASSES, draw
from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.errors import MassRemovalError
from searchcore.models.encoder import Encoder
from searchcore.sources.datasets import file_path, printable_path
from tests.support import run_cli, settings_env


def jpeg(seed: int, size: tuple[int, int] = (96, 96)) -> bytes:
    buffer = io.BytesIO()
    draw(*CLASSES[seed % len(CLASSES)], random.Random(seed), size).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


# Names as real disks hold them, as bytes: a Windows zip keeps GBK or Big5, cameras and scripts leave the rest.
STRANGE_NAMES = [
    "旅游".encode("gbk") + b".jpg",
    "旅遊".encode("big5") + b".jpg",
    b"line\nbreak.jpg",
    b"tab\tand\rreturn.jpg",
    "😀 生日 🎂.jpg".encode(),
    b"  spaces  in  name .jpg",
    b"back\\slash \\x41.jpg",
    # a 300-character path (a name may hold 255 bytes, so the long path spans two folders)
    ("长" * 80).encode() + b"/" + ("照片" * 40).encode() + b"/" + ("a" * 139).encode() + b".jpg",
]


@pytest.fixture
def strange(tmp_path: Path) -> Path:
    """A folder of pictures under the STRANGE_NAMES, plus one ordinary picture in an ordinary sub-folder."""
    root = tmp_path / "disk"
    for seed, name in enumerate(STRANGE_NAMES):
        path = os.path.join(os.fsencode(root), name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out:
            out.write(jpeg(seed))
    (root / "2024").mkdir()
    (root / "2024" / "plain.jpg").write_bytes(jpeg(99))
    return root


def test_printable_path_is_lossless_and_leaves_ordinary_names_alone() -> None:
    for name in STRANGE_NAMES:
        original = os.fsdecode(name)
        shown = printable_path(original)
        assert file_path(shown) == original
        shown.encode("utf-8")  # no surrogate left: valid UTF-8
        assert shown.isprintable() or all(c.isprintable() or c == " " for c in shown)
    assert printable_path("2024/旅行/IMG_1.jpg") == "2024/旅行/IMG_1.jpg"
    assert printable_path(os.fsdecode("旅游".encode("gbk") + b".jpg")) == "\\xc2\\xc3\\xd3\\xce.jpg"


def test_any_file_name_is_ingested_and_every_output_is_valid_json(settings: Settings, strange: Path) -> None:
    env = settings_env(settings)
    done = run_cli("ingest", str(strange), "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["added"], report["bad"]) == (len(STRANGE_NAMES) + 1, [])

    found = run_cli("search", "红色的圆形", "--top-k", "50", "--json", env=env)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    paths = {hit["path"] for hit in hits}
    assert paths == {printable_path(os.fsdecode(n)) for n in STRANGE_NAMES} | {"2024/plain.jpg"}
    for path in paths:  # each printable path leads back to its file
        assert (strange / file_path(path)).is_file()

    folder = run_cli("search", "红色的圆形", "--folder", "2024", "--json", env=env)
    assert [hit["path"] for hit in json.loads(folder.stdout)] == ["2024/plain.jpg"]
    again = json.loads(run_cli("ingest", str(strange), "--json", env=env).stdout)
    assert (again["added"], again["unchanged"]) == (0, len(STRANGE_NAMES) + 1)
    checked = run_cli("check", "--json", env=env)
    assert checked.returncode == 0 and json.loads(checked.stdout)["images"] == len(STRANGE_NAMES) + 1


def test_sync_refuses_to_empty_a_library_when_the_drive_is_not_mounted(settings: Settings, strange: Path,
                                                                       tmp_path: Path) -> None:
    env = settings_env(settings)
    assert run_cli("ingest", str(strange), env=env).returncode == 0
    moved = tmp_path / "moved"
    moved.mkdir()
    for n, path in enumerate([p for p in strange.rglob("*") if p.is_file()]):  # every file moved out of the root
        path.rename(moved / f"{n}.jpg")
    assert any(strange.iterdir())  # its sub-folders are left
    refused = run_cli("ingest", str(strange), "--sync", env=env)
    assert refused.returncode != 0 and "Nothing was removed" in refused.stderr, refused.stderr
    assert json.loads(run_cli("info", "--json", env=env).stdout)["count"] == len(STRANGE_NAMES) + 1

    shutil.move(strange, tmp_path / "elsewhere")
    strange.mkdir()  # the empty mount point left when the drive is not mounted

    refused = run_cli("ingest", str(strange), "--sync", env=env)
    assert refused.returncode != 0
    assert "the folder is empty: is the drive mounted?" in refused.stderr and "Traceback" not in refused.stderr
    assert "--allow-mass-removal" in refused.stderr
    info = json.loads(run_cli("info", "--json", env=env).stdout)
    assert info["count"] == len(STRANGE_NAMES) + 1

    confirmed = run_cli("ingest", str(strange), "--sync", "--allow-mass-removal", "--json", env=env)
    assert confirmed.returncode == 0, confirmed.stderr
    assert json.loads(confirmed.stdout)["removed"] == len(STRANGE_NAMES) + 1


def test_sync_refuses_to_remove_more_than_half_at_once(engine: Engine, tmp_path: Path) -> None:
    root = tmp_path / "album"
    root.mkdir()
    for n in range(6):
        (root / f"{n}.jpg").write_bytes(jpeg(n))
    engine.ingest(root)
    for n in range(4):  # files moved out of the root: four of six gone
        (root / f"{n}.jpg").rename(tmp_path / f"{n}.jpg")

    with pytest.raises(MassRemovalError, match="more than 50%") as refused:
        engine.ingest(root, sync=True)
    assert (refused.value.gone, refused.value.recorded) == (4, 6)
    assert engine.info().count == 6
    assert engine.ingest(root, sync=True, allow_mass_removal=True).removed == 4
    assert engine.info().count == 2


def test_sync_refuses_when_none_of_the_recorded_files_is_there(engine: Engine, tmp_path: Path) -> None:
    root = tmp_path / "nas"
    root.mkdir()
    for n in range(3):
        (root / f"{n}.jpg").write_bytes(jpeg(n))
    engine.ingest(root)
    for n in range(3):
        (root / f"{n}.jpg").unlink()
    (root / "other.jpg").write_bytes(jpeg(50))  # another folder mounted at the same place

    with pytest.raises(MassRemovalError, match="is this the right folder"):
        engine.ingest(root, sync=True)
    assert engine.info().count == 4  # nothing removed; the new picture is added all the same
    done = engine.ingest(root, sync=True, allow_mass_removal=True)
    assert (done.removed, done.added, engine.info().count) == (3, 0, 1)


def test_build_tab_sync_shows_the_refusal_and_removes_nothing(engine: Engine, tmp_path: Path) -> None:
    from searchcore.web.ui.build_tab import SOURCE_FOLDER
    from searchcore.web.ui.layout import SearchApp

    root = tmp_path / "usb"
    root.mkdir()
    for n in range(3):
        (root / f"{n}.jpg").write_bytes(jpeg(n))
    app = SearchApp(engine)
    app.ingest(SOURCE_FOLDER, "", None, str(root), None, "usb", False, False)
    for n in range(3):
        (root / f"{n}.jpg").unlink()

    with pytest.warns(UserWarning, match="is the drive mounted"):
        text, _ = app.ingest(SOURCE_FOLDER, "", None, str(root), None, "usb", True, False)
    assert "is the drive mounted?" in text and "Nothing was removed" in text, text
    assert engine.info("usb").count == 3


# Originals stay where they are


def big_jpeg(seed: int) -> bytes:
    """A 12-megapixel photo-like JPEG (4000x3000): gradients, a few shapes, sensor grain."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:3000, 0:4000].astype(np.float32)
    base = np.stack([80 + 120 * x / 4000, 60 + 140 * y / 3000, 200 - 100 * (x + y) / 7000], axis=-1)
    image = Image.fromarray(base.astype(np.uint8))
    pen = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0, size = (int(v) for v in rng.integers(0, 3000, 3))
        pen.ellipse((x0, y0, x0 + size // 3, y0 + size // 3), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    grain = np.asarray(image, dtype=np.int16) + rng.normal(0, 4, (3000, 4000, 3)).astype(np.int16)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(grain, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_a_folder_library_keeps_thumbnails_and_serves_originals_from_disk(settings: Settings,
                                                                          torch_encoder: Encoder,
                                                                          tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from searchcore.web.api import create_app

    root = tmp_path / "camera"
    root.mkdir()
    for n in range(20):
        (root / f"IMG_{n:04d}.jpg").write_bytes(big_jpeg(n))
    folder_bytes = sum(p.stat().st_size for p in root.iterdir())

    with Engine(settings, encoder=torch_encoder) as engine:
        report = engine.ingest(root, library="camera")
        assert (report.added, report.bad) == (20, [])
        ids = list(engine.images.ids("camera"))
        stored = engine.images.get_many("camera", ids)
        for image in stored.values():
            assert image.thumbnail and (image.width, image.height) == (4000, 3000)
            assert max(Image.open(io.BytesIO(image.data)).size) <= 512
            assert image.data != (root / image.path).read_bytes()
        client = TestClient(create_app(engine))
        some = next(iter(stored.values()))
        served = client.get(f"/api/images/camera/{some.image_id}")
        assert served.status_code == 200 and served.content == (root / some.path).read_bytes()
        assert served.headers["content-type"] == "image/jpeg"

        (root / some.path).write_bytes(big_jpeg(99))  # changed on disk: never another picture
        changed = client.get(f"/api/images/camera/{some.image_id}")
        assert changed.status_code == 410 and "changed" in changed.json()["detail"]
        other = next(i for i in stored.values() if i.image_id != some.image_id)
        (root / other.path).unlink()
        gone = client.get(f"/api/images/camera/{other.image_id}")
        assert gone.status_code == 404 and "not in its folder" in gone.json()["detail"]

        checked = engine.check("camera")
        assert checked.missing_files == [f"{root}/{other.path}"]
        assert checked.changed_files == [f"{root}/{some.path}"]
        assert engine.check("camera", repair=True).repaired
        assert engine.check("camera").changed_files == []
    store_bytes = sum(p.stat().st_size for p in tmp_path.glob("images.db*"))
    assert store_bytes < 0.05 * folder_bytes, (store_bytes, folder_bytes)


def test_relocate_points_a_library_at_its_folder_on_another_disk(settings: Settings, torch_encoder: Encoder,
                                                                 tmp_path: Path) -> None:
    old = tmp_path / "usb1" / "Pictures"
    (old / "2024").mkdir(parents=True)
    for n in range(4):
        (old / "2024" / f"{n}.jpg").write_bytes(jpeg(n))
    with Engine(settings, encoder=torch_encoder) as engine:
        engine.ingest(old)
        before = [(r.image_id, r.path) for r in engine.search_text("红色的圆形", 4)]
    new = tmp_path / "usb2" / "照片"
    new.parent.mkdir()
    shutil.copytree(old, new)  # a copy: new modification times, the same content
    shutil.rmtree(old)

    refused = run_cli("relocate", str(tmp_path), env=settings_env(settings))
    assert refused.returncode != 0 and "is it the right folder?" in refused.stderr
    moved = run_cli("relocate", str(new), "--json", env=settings_env(settings))
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["files"] == 4

    with Engine(settings, encoder=torch_encoder) as engine:
        assert [(r.image_id, r.path) for r in engine.search_text("红色的圆形", 4)] == before
        original = engine.original(before[0][0])
        assert original.data == (new / before[0][1]).read_bytes()
        again = engine.ingest(new, sync=True)
        assert (again.added, again.unchanged, again.removed, again.missing) == (0, 4, 0, 0)
        assert engine.check().consistent
