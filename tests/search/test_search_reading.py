"""Search the way people ask (issue 29), on real stores with the tiny model: the hybrid order where many captions
tie, quoted words, time words over a folder whose files span two years, bare seasons, the automatic cut on the
shape classes, the sorts, and a burst of near-identical pictures folded into one hit."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from demo.sample_data import write_dataset
from demo.shapes import CLASSES, caption, draw
from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.errors import QueryError
from searchcore.models.encoder import Encoder
from searchcore.search import fold_rows, sort_by_date
from searchcore.stores.filters import Filters
from searchcore.stores.vectors import Hit
from tests.support import CliRun, Served, burst_variants, torch_engine
from tests.web.test_video_web import shape_video

TODAY = dt.date(2026, 3, 4)
MONTHS = [(2024 + (2 + m) // 12, (2 + m) % 12 + 1) for m in range(24)]  # 2024-03 .. 2026-02, one picture each
PER_CLASS = 8  # pictures of each shape class in the library the cut is measured on


def month_of(path: str) -> tuple[int, int]:
    return MONTHS[int(Path(path).stem)]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, torch_encoder: Encoder) -> Iterator[Engine]:
    """Libraries `captions` (90 captioned shapes, no dates), `photos` (24 shapes, one a month over two years),
    `shapes` (PER_CLASS of each class) and `burst` (a burst of five of the first class, one of each other)."""
    work = tmp_path_factory.mktemp("reading")
    write_dataset(work / "captions", "valid", 90, seed=4, first_id=1000)
    rng = random.Random(29)
    (work / "photos").mkdir()
    for n, (year, month) in enumerate(MONTHS):
        path = work / "photos" / f"{n:02d}.png"
        draw(*CLASSES[n % len(CLASSES)], rng, (96, 96)).save(path)
        stamp = dt.datetime(year, month, 15, 12).timestamp()
        os.utime(path, (stamp, stamp))
    (work / "shapes").mkdir()
    for n in range(PER_CLASS * len(CLASSES)):
        draw(*CLASSES[n % len(CLASSES)], rng, (96, 96)).save(work / "shapes" / f"{n:03d}.png")
    (work / "burst").mkdir()
    for n, cls in enumerate(CLASSES[1:], 1):  # to the tiny model two pictures of one class are near-identical
        draw(*cls, rng, (96, 96)).save(work / "burst" / f"{n:02d}.png")
    for name, data in burst_variants(draw(*CLASSES[0], rng, (120, 90))).items():
        (work / "burst" / name).write_bytes(data)
    with torch_engine(work, model_cache, torch_encoder) as eng:
        eng.ingest(work / "captions", split="valid", library="captions")
        for library in ("photos", "shapes", "burst"):
            assert eng.ingest(work / library, library=library).bad == []
        yield eng


def test_hybrid_lists_text_matches_first_then_the_rest_each_by_similarity(engine: Engine) -> None:
    """30 of the 90 captions hold 三角形, all with the same BM25 score: the order must follow the similarity."""
    hits = engine.search_text("三角形", 60, library="captions", mode="hybrid")
    matched = [h for h in hits if h.text_match]
    assert [h.text_match for h in hits] == [True] * 30 + [False] * 30
    assert all(("三角形" in h.captions[0]) == h.text_match for h in hits)
    assert len({round(h.keyword_score or 0, 6) for h in matched}) == 1, "the captions tie on BM25"
    for group in (matched, [h for h in hits if not h.text_match]):
        similarities = [h.similarity for h in group]
        assert similarities == sorted(similarities, reverse=True)  # type: ignore[type-var]
    blue = engine.search_text("蓝色的三角形", 8, library="captions")
    assert [h.text_match for h in blue] == [True] * 5 + [False] * 3
    assert [h.similarity for h in blue[:5]] == sorted((h.similarity for h in blue[:5]), reverse=True)  # type: ignore


def test_quoted_phrases_must_appear_alone_and_with_a_rest(engine: Engine) -> None:
    for mode in ("semantic", "keyword", "hybrid"):
        alone = engine.search_text("「蓝色的圆形」", 50, library="captions", mode=mode)
        assert sorted(h.captions[0] for h in alone) == ["蓝色的圆形"] * 5, mode
        with_rest = engine.search_text('"圆形" 红色', 50, library="captions", mode=mode)
        assert len(with_rest) == 30 and all("圆形" in h.captions[0] for h in with_rest), mode
    ranked = engine.search_text("“圆形” 红色", 5, library="captions", mode="semantic")
    assert sum(h.captions[0] == "红色的圆形" for h in ranked) >= 4, "the rest ranks the pictures that hold it"
    assert [h.similarity for h in ranked] == sorted((h.similarity for h in ranked), reverse=True)  # type: ignore
    with pytest.raises(QueryError, match="has no text index") as refused:
        engine.search_text("「圆形」", 5, library="photos")
    assert refused.value.kind == "phrase_needs_text_index"


def test_time_words_keep_only_their_period(engine: Engine) -> None:
    def months(query: str, **options: object) -> list[tuple[int, int]]:
        return [month_of(h.path) for h in engine.search_text(query, 100, library="photos", today=TODAY,
                                                             **options)]  # type: ignore[arg-type]

    assert sorted(months("去年夏天红色的圆形")) == [(2025, 6), (2025, 7), (2025, 8)]
    assert sorted(months("上个月拍的正方形")) == [(2026, 2)]
    assert months("去年的照片") == [(2025, m) for m in range(12, 0, -1)], "only time words: the period, newest first"
    assert months("前年", sort="oldest") == [(2024, m) for m in range(3, 13)]
    assert sorted(months("2025年3月 三角形")) == [(2025, 3)]
    explicit = months("去年 圆形", filters=Filters.parse(since="2024-05-01", until="2024-06-30"))
    assert sorted(explicit) == [(2024, 5), (2024, 6)], "explicit dates win over understood ones"
    assert len(months("去年夏天红色的圆形", literal=True)) == 24, "literal: the query as typed"
    # the captioned split has no dates: its query is used as typed
    assert engine.understand("去年夏天红色的圆形", "captions", today=TODAY).since is None
    assert engine.search_text("去年夏天红色的圆形", 5, library="captions", today=TODAY)


def test_bare_seasons_are_searched_as_content(engine: Engine) -> None:
    found = engine.search_text("冬天的红色圆形", 100, library="photos", today=TODAY)
    assert len(found) == 24, "no date filter: every picture is ranked"
    assert engine.understand("冬天的红色圆形", "photos", today=TODAY).text == "冬天的红色圆形"


def test_sorts_order_the_hits_returned_by_date(engine: Engine) -> None:
    relevance = engine.search_text("红色的圆形", 10, library="photos")
    newest = engine.search_text("红色的圆形", 10, library="photos", sort="newest")
    oldest = engine.search_text("红色的圆形", 10, library="photos", sort="oldest")
    assert {h.image_id for h in newest} == {h.image_id for h in oldest} == {h.image_id for h in relevance}
    assert [h.taken for h in newest] == sorted((h.taken for h in relevance), reverse=True)  # type: ignore
    assert [h.taken for h in oldest] == sorted(h.taken for h in relevance)  # type: ignore
    assert [h.rank for h in newest] == list(range(1, 11))
    undated = sort_by_date([Hit(1, 0.9), Hit(2, 0.8), Hit(3, 0.7), Hit(4, 0.6)], {2: 100, 4: 200}, newest=True)
    assert [h.image_id for h in undated] == [4, 2, 1, 3], "hits without a date go last, in their order"
    with pytest.raises(QueryError, match="sort must be"):
        engine.search_text("红色", 3, library="photos", sort="random")


def test_the_automatic_cut_keeps_each_shape_class(engine: Engine) -> None:
    """Semantic mode: precision and recall of the hits kept, against the class's PER_CLASS pictures."""
    precision, recall = [], []
    for cls in CLASSES:
        kept = engine.search_text(caption(*cls), 1000, library="shapes", mode="semantic", cutoff="auto")
        right = sum(CLASSES[int(Path(h.path).stem) % len(CLASSES)] == cls for h in kept)
        precision.append(right / max(len(kept), 1))
        recall.append(right / PER_CLASS)
    assert sum(precision) / len(precision) >= 0.8, precision
    assert sum(recall) / len(recall) >= 0.8, recall
    assert len(engine.search_text(caption(*CLASSES[0]), 1000, library="shapes")) == PER_CLASS * len(CLASSES)
    with pytest.raises(QueryError, match="cutoff must be auto"):
        engine.search_text("红色", 3, library="shapes", cutoff="always")


def test_a_burst_folds_into_one_hit(engine: Engine) -> None:
    burst = {"b0.png", "b1.png", "b2.jpg", "b3.png", "b4.png"}
    plain = engine.search_text(caption(*CLASSES[0]), 10, library="burst", mode="semantic")
    assert {h.path for h in plain[:6]} >= burst, "without collapse the five are separate hits"
    folded = engine.search_text(caption(*CLASSES[0]), 10, library="burst", mode="semantic", collapse=True)
    shown = [h for h in folded if h.path in burst]
    assert len(shown) == 1 and len(shown[0].similar) == 4
    paths = {i: m.path for i, m in engine.images.get_meta_many("burst", shown[0].similar).items()}
    assert set(paths.values()) | {shown[0].path} == burst
    assert len(folded) == 10 and all(h.similar == [] for h in folded if h.path not in burst)


def all_pairs_fold(matrix: np.ndarray, threshold: float) -> np.ndarray:
    """The fold's rule read literally: in rank order, each kept row takes every later row near it not taken yet."""
    close = matrix @ matrix.T >= threshold
    into = np.full(len(matrix), -1)
    for row in range(len(matrix)):
        if into[row] < 0:
            for later in range(row + 1, len(matrix)):
                if close[row, later] and into[later] < 0:
                    into[later] = row
    return into


def test_the_blocked_fold_answers_as_all_pairs_would() -> None:
    """Chains (a near b, b near c, a not near c) cross block edges; the first kept row wins."""
    rng = np.random.default_rng(11)
    for trial in range(120):
        n, dim = int(rng.integers(2, 300)), int(rng.choice([8, 64]))
        rows = rng.standard_normal((n, dim)).astype(np.float32)
        for i in range(1, n):
            if rng.random() < 0.4:  # near an earlier row, by a step that is sometimes over the threshold
                rows[i] = rows[int(rng.integers(0, i))] + rng.uniform(0.05, 0.5) * rng.standard_normal(dim)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        block = int(rng.choice([1, 5, 32, 128]))
        assert (fold_rows(rows, 0.95, block) == all_pairs_fold(rows, 0.95)).all(), (trial, n, dim, block)
    assert (fold_rows(np.eye(3, dtype=np.float32)[[0, 0, 1, 0, 2]], 0.95) == [-1, 0, -1, 0, -1]).all()


@pytest.mark.slow
def test_collapse_leaves_a_videos_moments_and_folds_pictures_among_themselves(engine: Engine, tmp_path: Path) -> None:
    """A red circle twice in one video (two moments, frames alike) beside a burst of five red-circle pictures."""
    root = tmp_path / "clips"
    root.mkdir()
    shape_video(root / "walk.mp4", [(0.0, "红色", "圆形"), (6.0, "蓝色", "正方形"), (12.0, "红色", "圆形")], 18)
    rng = random.Random(5)
    for name, data in burst_variants(draw("红色", "圆形", rng, (120, 90))).items():
        (root / name).write_bytes(data)
    draw("绿色", "三角形", rng, (96, 96)).save(root / "green.png")
    assert engine.ingest(root, library="clips").bad == []
    query = caption("红色", "圆形")
    plain = engine.search_text(query, 8, library="clips", mode="semantic")
    folded = engine.search_text(query, 8, library="clips", mode="semantic", collapse=True)
    moments = sorted((h.video.start, h.video.end) for h in plain if h.video is not None)
    assert len(moments) == 2 and moments[0][0] < moments[1][0], "two moments of the one video"
    assert sorted((h.video.start, h.video.end) for h in folded if h.video is not None) == moments
    assert all(h.similar == [] for h in folded if h.video is not None), "nothing folds into a moment"
    burst = [h for h in folded if h.path.startswith("b")]
    assert len(burst) == 1 and len(burst[0].similar) == 4, "the burst folds into one picture, not into a moment"
    assert len([h for h in plain if h.path.startswith("b")]) == 5


def test_the_api_reads_and_folds_as_the_engine_does(served: Served) -> None:
    with httpx.Client(base_url=served.url) as http:
        found = http.post("/api/search", json={"text": caption(*CLASSES[0]), "top_k": 5, "library": "burst",
                                               "collapse": True, "cutoff": "auto", "sort": "newest"})
        assert found.status_code == 200, found.text
        hits = found.json()
        assert [len(h["similar"]) for h in hits] == [4] and hits[0]["text_match"] is False
        listed = http.post("/api/search", json={"text": "2025年的照片", "top_k": 50, "library": "photos"})
        assert listed.status_code == 200 and len(listed.json()) == 12, listed.text
        bad = http.post("/api/search", json={"text": "红色", "library": "photos", "sort": "random"})
        assert bad.status_code == 422
        quoted = http.post("/api/search", json={"text": "「圆形」", "library": "photos"})
        assert quoted.status_code == 400 and quoted.json()["kind"] == "phrase_needs_text_index"


def test_the_command_line_folds_and_sorts(settings: Settings, cli_in_process: CliRun, tmp_path: Path) -> None:
    folder = tmp_path / "burst"
    folder.mkdir()
    rng = random.Random(3)
    for n, cls in enumerate(CLASSES[1:7], 1):
        draw(*cls, rng, (96, 96)).save(folder / f"{n:02d}.png")
    for name, data in burst_variants(draw(*CLASSES[0], rng, (120, 90))).items():
        (folder / name).write_bytes(data)
    assert cli_in_process(settings, "ingest", str(folder))[0] == 0
    code, out, err = cli_in_process(settings, "search", caption(*CLASSES[0]), "--collapse", "--json",
                                    "--sort", "oldest", "--cutoff", "auto", "--top-k", "20")
    assert code == 0, err
    hits = json.loads(out)
    assert [len(h["similar"]) for h in hits] == [4], hits
    code, out, err = cli_in_process(settings, "search", caption(*CLASSES[0]), "--collapse", "--literal")
    assert code == 0 and "(+4 similar)" in out, out
    with pytest.raises(SystemExit, match="2"):  # argparse refuses it, naming the choices
        cli_in_process(settings, "search", "红色", "--sort", "random")
