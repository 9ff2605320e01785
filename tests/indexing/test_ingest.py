"""Ingest and search end to end with the tiny model: real semantics, idempotence, every source format."""

from __future__ import annotations

import base64
import io
import random
import shutil
from pathlib import Path

import pytest

from demo.sample_data import image_classes
from demo.shapes import draw
from searchcore.engine import Engine
from searchcore.errors import DatasetError, LibraryError, QueryError


def red_circle_share(engine: Engine, classes: dict[int, tuple[str, str]], k: int = 5) -> float:
    results = engine.search_text("红色的圆形", top_k=k)
    return sum(classes[r.image_id] == ("红色", "圆形") for r in results) / k


def test_red_circles_come_first(engine: Engine, dataset: Path) -> None:
    report = engine.ingest(dataset, split="valid")
    assert (report.added, report.present, report.bad) == (90, 0, [])
    results = engine.search_text("红色的圆形", top_k=5)
    assert [r.rank for r in results] == [1, 2, 3, 4, 5]
    assert all("红色的圆形" in r.captions for r in results)
    assert results[0].score >= results[-1].score
    assert red_circle_share(engine, image_classes(dataset, "valid")) == 1.0


def test_reingest_changes_no_counts(engine: Engine, dataset: Path) -> None:
    engine.ingest(dataset, split="valid")
    before = engine.info()
    again = engine.ingest(dataset, split="valid")
    assert (again.added, again.present) == (0, 90)
    after = engine.info()
    assert (after.count, after.images) == (before.count, before.images) == (90, 90)


def test_integer_ids_stay_integers(engine: Engine, dataset: Path) -> None:
    engine.ingest(dataset, split="valid")
    result = engine.search_text("蓝色的正方形", top_k=3)[0]
    assert isinstance(result.image_id, int) and 1000 <= result.image_id < 1090
    assert engine.get_image(result.image_id).image_id == result.image_id


def test_lmdb_split_gives_the_same_library(engine: Engine, dataset: Path, tmp_path: Path) -> None:
    lmdb_only = tmp_path / "lmdb_only"
    shutil.copytree(dataset / "lmdb", lmdb_only / "lmdb")
    shutil.copy(dataset / "valid_texts.jsonl", lmdb_only)
    report = engine.ingest(lmdb_only, split="valid", library="from_lmdb")
    assert report.added == 90
    engine.ingest(dataset, split="valid", library="from_tsv")
    a = [r.image_id for r in engine.search_text("绿色的三角形", 10, library="from_lmdb")]
    b = [r.image_id for r in engine.search_text("绿色的三角形", 10, library="from_tsv")]
    assert a == b


def test_image_folder_stores_each_file_once(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    rng = random.Random(5)
    draw("红色", "圆形", rng).save(folder / "a.png")
    draw("蓝色", "正方形", rng).save(folder / "sub" / "b.jpg")
    shutil.copy(folder / "a.png", folder / "sub" / "copy_of_a.PNG")
    (folder / "notes.txt").write_text("not an image")
    report = engine.ingest(folder, library="photos")
    assert (report.added, report.present) == (2, 1)
    assert engine.info("photos").count == 2
    top = engine.search_text("红色的圆形", 1, library="photos")[0]
    assert top.format == "PNG" and top.captions == []


def test_query_by_image_and_more_like_this(engine: Engine, dataset: Path) -> None:
    engine.ingest(dataset, split="valid")
    classes = image_classes(dataset, "valid")
    buffer = io.BytesIO()
    draw("黄色", "三角形", random.Random(11)).save(buffer, format="JPEG")
    by_image = engine.search_image(buffer.getvalue(), 5)
    assert classes[by_image[0].image_id] == ("黄色", "三角形")
    similar = engine.search_similar(by_image[0].image_id, 5)
    assert similar[0].image_id == by_image[0].image_id and similar[0].score == pytest.approx(1.0, abs=1e-3)


def test_progress_reports_toward_the_total(engine: Engine, dataset: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    engine.ingest(dataset, split="train", progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (36, 36)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_features_ingest_needs_no_encoding(engine: Engine, dataset: Path, tmp_path: Path) -> None:
    import json

    engine.ingest(dataset, split="train", library="encoded")
    ids = list(range(5000, 5036))
    vectors = engine.vectors.vectors("encoded", ids)
    root = tmp_path / "feat"
    shutil.copytree(dataset, root, ignore=shutil.ignore_patterns("lmdb"))
    with (root / "train_imgs.img_feat.jsonl").open("w") as out:
        for image_id in ids:
            out.write(json.dumps({"image_id": image_id, "feature": vectors[image_id].tolist()}) + "\n")
    report = engine.ingest(root, split="train", features=root / "train_imgs.img_feat.jsonl", library="features")
    assert report.added == 36 and not report.bad
    assert [r.image_id for r in engine.search_text("黑色的圆形", 8, library="features")] == \
        [r.image_id for r in engine.search_text("黑色的圆形", 8, library="encoded")]


def test_bad_records_are_reported_and_the_rest_kept(engine: Engine, dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    root.mkdir()
    lines = (dataset / "train_imgs.tsv").read_text().splitlines()[:5]
    lines += ["no tab here", "77\t!!!not base64!!!", f"78\t{base64.b64encode(b'plain text').decode()}"]
    (root / "train_imgs.tsv").write_text("\n".join(lines) + "\n")
    shutil.copy(dataset / "train_texts.jsonl", root)
    report = engine.ingest(root, split="train")
    assert report.added == 5
    assert [(b.line, b.file) for b in report.bad] == [(6, "train_imgs.tsv"), (7, "train_imgs.tsv"),
                                                      (8, "train_imgs.tsv")]
    assert "no tab" in str(report.bad[0].reason) and "base64" in str(report.bad[1].reason)
    assert "not an image" in str(report.bad[2].reason)


def test_wrong_split_and_empty_query_are_clear_errors(engine: Engine, dataset: Path) -> None:
    with pytest.raises(DatasetError, match="split 'nope' not found.*train, valid"):
        engine.ingest(dataset, split="nope")
    with pytest.raises(LibraryError, match="does not exist"):
        engine.search_text("红色的圆形", 5, library="never_built")
    with pytest.raises(QueryError, match="empty"):
        engine.search_text("   ", 5)


def test_library_of_another_model_is_refused(engine: Engine, dataset: Path) -> None:
    engine.vectors.open_library("other", "RN50", 1024, create=True)
    with pytest.raises(LibraryError, match="built with model RN50"):
        engine.ingest(dataset, split="train", library="other")
