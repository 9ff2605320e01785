"""Finding what was typed (issue 19): any fragment of the words in a picture finds it first, in keyword and in
hybrid mode; hybrid is as precise as semantic on shapes; hits carry readable scores; a similarity threshold;
excluded terms."""

from __future__ import annotations

import base64
import io
import json
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from demo.sample_data import write_dataset
from demo.shapes import CLASSES, caption_variants
from demo.text_pictures import FONTS, text_picture, unique_fragments, write_text_pictures
from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.errors import QueryError
from searchcore.models.encoder import Encoder
from tests.support import run_cli, settings_env, tiny_settings, write_split

pytestmark = pytest.mark.skipif(not all(f.is_file() for f in FONTS),
                                reason="needs the Noto CJK fonts: apt-get install fonts-noto-cjk")
PICTURES = 200
CHECKED = 40  # queries whose batched ranking is compared with search_text's
# Traditional and simplified characters find each other. OCR pictures: what each says, and a query in the other
# form. (PP-OCRv4's characters lack some traditional ones: it reads 第九會議室 as 第九會室, so 會議室 is a caption.)
FORMS = {"trad.png": (["體育館門票"], "体育馆门"), "simp.png": (["国际会议中心"], "國際會議")}
CAPTIONED = {5001: ("第九會議室", "九会议室"), 5002: ("第七会议室", "七會議室")}  # dataset id: (caption, query)


class Corpus:
    """The library's engine, what each picture says, and the command line on the same library."""

    def __init__(self, settings: Settings, encoder: Encoder, said: dict[str, list[str]]) -> None:
        self.settings, self.encoder, self.said = settings, encoder, said
        self.engine = Engine(settings, encoder=encoder)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`searchcore ARGS` on the library, which the engine lets go of meanwhile (Lite opens a file once)."""
        self.engine.close()
        try:
            return run_cli(*args, env=settings_env(self.settings))
        finally:
            self.engine = Engine(self.settings, encoder=self.encoder)

    def paths(self, ids: list[int]) -> dict[int, str]:
        return {i: m.path for i, m in self.engine.images.get_meta_many(self.settings.library, ids).items()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, tiny_model: Path,
           torch_encoder: Encoder) -> Iterator[Corpus]:
    """90 captioned shapes and 200 generated pictures of words, and two in traditional and simplified
    characters, the pictures ingested with --ocr."""
    work = tmp_path_factory.mktemp("fragments")
    said = write_text_pictures(work / "signs", PICTURES)
    rng = random.Random(7)
    (work / "forms").mkdir()
    for name, (lines, _) in FORMS.items():
        text_picture(lines, rng).save(work / "forms" / name)
    write_dataset(work / "shapes", "valid", 90, seed=1, first_id=1000)
    grey = io.BytesIO()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(grey, "JPEG")
    write_split(work / "captioned", [f"{i}\t".encode() + base64.b64encode(grey.getvalue()) for i in CAPTIONED],
                [json.dumps({"text_id": i, "text": caption, "image_ids": [i]}, ensure_ascii=False).encode()
                 for i, (caption, _) in CAPTIONED.items()])
    corpus = Corpus(tiny_settings(work, model_cache, backend="torch", precision="fp32"), torch_encoder, said)
    try:
        corpus.engine.ingest(work / "shapes", split="valid")
        report = corpus.engine.ingest(work / "signs", ocr=True)
        assert (report.added, report.bad) == (PICTURES, [])
        assert corpus.engine.ingest(work / "forms", ocr=True).added == len(FORMS)
        assert corpus.engine.ingest(work / "captioned", split="valid").added == len(CAPTIONED)
        yield corpus
    finally:
        corpus.engine.close()


def first(engine: Engine, query: str, mode: str, **options: object) -> str | None:
    found = engine.search_text(query, 1, mode=mode, **options)  # type: ignore[arg-type]
    return found[0].path if found else None


def fragment_queries(corpus: Corpus) -> list[tuple[str, str]]:
    """Every fragment of 2 to 6 pieces of each picture's lines that no other picture, caption or form holds."""
    captions = [v for c in CLASSES for v in caption_variants(*c)]
    forms = [line for lines, _ in FORMS.values() for line in lines] + [caption for caption, _ in CAPTIONED.values()]
    return unique_fragments(corpus.said, captions + forms)


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
def test_every_fragment_only_one_picture_holds_finds_it_first(corpus: Corpus, mode: str) -> None:
    queries = fragment_queries(corpus)
    assert len(queries) > 2000, "2 to 6 pieces of every line"
    ranked = corpus.engine.rank_texts([q for q, _ in queries], 1, mode=mode)  # all of them, in batches
    paths = corpus.paths(list({h.image_id for hits in ranked for h in hits}))
    missed = [(q, name) for (q, name), hits in zip(queries, ranked) if [paths.get(h.image_id) for h in hits] != [name]]
    assert len(missed) / len(queries) <= 0.05, f"{len(missed)} of {len(queries)} missed, e.g. {missed[:10]}"


@pytest.mark.parametrize("mode", ["semantic", "keyword", "hybrid"])
def test_batched_rankings_are_what_search_ranks(corpus: Corpus, mode: str) -> None:
    queries = [q for q, _ in random.Random(19).sample(fragment_queries(corpus), CHECKED)] + ["红色的圆形", "蓝色"]
    ranked = corpus.engine.rank_texts(queries, 3, mode=mode)
    for query, hits in zip(queries, ranked):
        assert [h.image_id for h in hits] == [r.image_id for r in corpus.engine.search_text(query, 3, mode=mode)]


def test_traditional_and_simplified_characters_find_each_other(corpus: Corpus) -> None:
    for mode in ("keyword", "hybrid"):
        for name, (lines, query) in FORMS.items():
            assert first(corpus.engine, query, mode) == name, f"{query} ({mode}) finds the picture of {lines[0]}"
        for image_id, (caption, query) in CAPTIONED.items():
            found = corpus.engine.search_text(query, 1, mode=mode)
            assert [r.image_id for r in found] == [image_id], f"{query} ({mode}) finds the picture of {caption}"
            assert found[0].keyword_score is not None and found[0].keyword_score > 0


def test_latin_digits_and_full_width_forms_find_their_picture(corpus: Corpus) -> None:
    mixed = [(name, line) for name, lines in corpus.said.items() for line in lines
             if any(p in line for p in ("WiFi", "iPhone 15", "3楼", "24小时"))]
    assert mixed, "the generator mixes Latin letters and digits into some lines"
    for name, line in mixed:
        wide = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in line)
        assert first(corpus.engine, wide, "keyword") == name, f"{wide} (full-width) finds {line}"
        assert first(corpus.engine, line.upper(), "hybrid") == name


def test_shape_queries_in_hybrid_mode_are_as_precise_as_semantic(corpus: Corpus) -> None:
    def precision(query: str, mode: str, color: str, shape: str) -> float:
        top = corpus.engine.search_text(query, 5, mode=mode)
        return sum(color in " ".join(r.captions) and shape in " ".join(r.captions) for r in top) / 5

    outcomes = [precision(q, "hybrid", c, s) >= precision(q, "semantic", c, s)
                for c, s in CLASSES for q in caption_variants(c, s)]
    assert sum(outcomes) / len(outcomes) >= 0.95


def test_hits_carry_their_similarity_and_keyword_score(corpus: Corpus) -> None:
    name, lines = next(iter(corpus.said.items()))
    query = lines[0][:4]
    hybrid = corpus.engine.search_text(query, 5, mode="hybrid")
    semantic = {r.image_id: r.similarity for r in corpus.engine.search_text(query, 300, mode="semantic")}
    assert hybrid[0].path == name and hybrid[0].keyword_score is not None and hybrid[0].keyword_score > 1
    for hit in hybrid:
        assert hit.similarity == pytest.approx(semantic[hit.image_id], abs=1e-4), "the cosine, not a fused value"
    done = corpus.cli("search", query, "--json", "--top-k", "3")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown[0]["path"] == name and shown[0]["keyword_score"] > 1
    assert all(-1 <= hit["similarity"] <= 1 for hit in shown)


@pytest.mark.parametrize("mode", ["semantic", "keyword", "hybrid"])
def test_the_threshold_drops_exactly_the_hits_below_it(corpus: Corpus, mode: str) -> None:
    everything = corpus.engine.search_text("红色的正方形", 100, mode=mode)
    similarities = sorted(r.similarity for r in everything if r.similarity is not None)
    threshold = similarities[len(similarities) // 2]
    kept = corpus.engine.search_text("红色的正方形", 100, mode=mode, min_similarity=threshold)
    assert [r.image_id for r in kept] == [r.image_id for r in everything if r.similarity >= threshold]  # type: ignore
    assert 0 < len(kept) < len(everything)
    done = corpus.cli("search", "红色的正方形", "--mode", mode, "--top-k", "100", "--min-similarity", str(threshold))
    assert done.returncode == 0 and f"{len(kept)} results with similarity ≥ {threshold}" in done.stdout


def test_excluded_terms_drop_pictures_that_hold_them(corpus: Corpus) -> None:
    for options, query in (({"exclude": "圆形"}, "红色"), ({}, "红色 -圆形")):
        top = corpus.engine.search_text(query, 10, mode="hybrid", **options)  # type: ignore[arg-type]
        said = [" ".join(r.captions) for r in top]
        assert len(top) == 10 and all("红色" in s for s in said), said
        assert not any("圆形" in s for s in said), said
        assert any("正方形" in s for s in said) and any("三角形" in s for s in said)
    name, lines = next(iter(corpus.said.items()))
    assert first(corpus.engine, lines[0][:4], "keyword", exclude=lines[0][2:4]) != name


def test_bad_thresholds_and_exclusions_are_refused_clearly(corpus: Corpus) -> None:
    for value in ("abc", 2, "nan", True):
        with pytest.raises(QueryError, match="min_similarity must be"):
            corpus.engine.search_text("红色", 3, min_similarity=value)
    with pytest.raises(QueryError, match="only excludes"):
        corpus.engine.search_text("-圆形", 3)
    done = corpus.cli("search", "红色", "--min-similarity", "high")
    assert done.returncode != 0 and "min_similarity must be" in done.stderr and "Traceback" not in done.stderr
