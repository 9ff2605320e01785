"""Finding pictures by the words in them: OCR at ingest or afterwards, keyword and hybrid search in Milvus's
BM25 index, and a clear refusal on a Milvus server too old for it."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from demo.shapes import CLASSES, draw
from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.errors import QueryError, UnsupportedError
from searchcore.models.encoder import Encoder
from searchcore.stores.text_index import rrf
from searchcore.stores.vectors import Hit
from tests.support import run_cli, settings_env, sign

SIGNS = {"signs/烤鸭.png": ["欢迎光临北京烤鸭店"], "signs/菜单.png": ["今日特价", "牛肉拉面"],
         "signs/通知.png": ["会议改到下午三点"]}


def note(lines: list[str]) -> Image.Image:
    """A 500x375 picture with lines of Chinese, as a shop sign or a note."""
    return sign([(line, (30, 60 + 80 * n)) for n, line in enumerate(lines)], background=(250, 245, 230),
                ink=(20, 20, 20))


@pytest.fixture
def pictures(tmp_path: Path) -> Path:
    """Three pictures of words among twelve of shapes."""
    root = tmp_path / "pictures"
    for name, lines in SIGNS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        note(lines).save(root / name)
    (root / "shapes").mkdir()
    for i in range(12):
        draw(*CLASSES[i % len(CLASSES)], random.Random(i), (96, 96)).save(root / "shapes" / f"{i}.png")
    return root


def by_path(results: list) -> list[str]:
    return [r.path for r in results]


def test_words_in_one_picture_find_it_first_in_keyword_and_hybrid_mode(engine: Engine, pictures: Path) -> None:
    report = engine.ingest(pictures, ocr=True)
    assert (report.added, report.bad) == (15, [])

    assert by_path(engine.search_text("北京烤鸭", 3, mode="keyword"))[:1] == ["signs/烤鸭.png"]
    assert by_path(engine.search_text("牛肉拉面", 3, mode="hybrid"))[:1] == ["signs/菜单.png"]
    assert by_path(engine.search_text("会议", 3))[:1] == ["signs/通知.png"], "hybrid is the default with text"
    # the tiny model alone cannot read: by meaning only, the sign is not found first
    assert by_path(engine.search_text("北京烤鸭", 15, mode="semantic"))[:1] != ["signs/烤鸭.png"] or \
        by_path(engine.search_text("会议", 15, mode="semantic"))[:1] != ["signs/通知.png"]

    hybrid = engine.search_text("红色的圆形", 5, mode="hybrid")
    assert hybrid[0].path.startswith("shapes/")
    semantic_first = engine.search_text("红色的圆形", 1, mode="semantic")[0]
    assert hybrid[0].image_id == semantic_first.image_id, "a shape query still finds that shape first"

    found = engine.search_text("北京烤鸭", 1, mode="keyword")[0]
    assert found.text == "欢迎光临北京烤鸭店"
    assert engine.search_text("菜单上没有的词语", 5, mode="keyword") == []


def test_ocr_command_on_an_existing_library_reads_the_same_text(settings: Settings, torch_encoder: Encoder,
                                                                pictures: Path, tmp_path: Path) -> None:
    with_ocr = settings.replace(library="with_ocr")
    later = settings.replace(library="later")
    engine = Engine(settings, encoder=torch_encoder)
    try:
        engine.ingest(pictures, library=with_ocr.library, ocr=True)
        engine.ingest(pictures, library=later.library)
        assert engine.search_text("北京烤鸭", 3, library=later.library) and \
            engine.search_text("x", 1, library=later.library)[0].text is None
    finally:
        engine.close()

    done = run_cli("ocr", "--json", env=settings_env(later))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["read"], report["with_text"], report["bad"]) == (15, 3, [])
    again = json.loads(run_cli("ocr", "--json", env=settings_env(later)).stdout)
    assert (again["read"], again["skipped"]) == (0, 15)

    engine = Engine(settings, encoder=torch_encoder)
    try:
        def texts(library: str) -> dict[str, str | None]:
            return {r.path: r.text for r in engine.search_text("x", 50, library=library, mode="semantic")}

        assert texts(later.library) == texts(with_ocr.library)
        assert texts(later.library)["signs/菜单.png"] == "今日特价\n牛肉拉面"
    finally:
        engine.close()
    found = run_cli("search", "北京烤鸭", "--mode", "keyword", "--json", env=settings_env(later))
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["text"] == "欢迎光临北京烤鸭店"


def test_captions_of_a_dataset_are_searchable_by_keyword(engine: Engine, dataset: Path) -> None:
    engine.ingest(dataset, split="valid")
    found = engine.search_text("圆形", 10, mode="keyword")
    assert found and all("圆形" in " ".join(r.captions) for r in found)


def test_a_milvus_server_older_than_2_5_refuses_keyword_search_clearly(milvus_server: str, settings: Settings,
                                                                       torch_encoder: Encoder, dataset: Path) -> None:
    server = settings.replace(milvus_uri=milvus_server, library="old_server_text")
    engine = Engine(server, encoder=torch_encoder)
    try:
        engine.ingest(dataset, split="train")  # ingests without a text index
        assert engine.search_text("红色的圆形", 3)[0].captions, "semantic search keeps working (the default)"
        for mode in ("keyword", "hybrid"):
            with pytest.raises(UnsupportedError, match=r"Milvus 2\.5 or newer.*runs v?2\.3"):
                engine.search_text("红色的圆形", 3, mode=mode)
        done = run_cli("search", "圆形", "--mode", "keyword", env=settings_env(server))
        assert done.returncode == 1 and "Milvus 2.5 or newer" in done.stderr and "Traceback" not in done.stderr
    finally:
        engine.drop()
        engine.close()


def test_bad_mode_is_refused(engine: Engine) -> None:
    with pytest.raises(QueryError, match="mode must be one of"):
        engine.search_text("猫", 3, mode="fuzzy")


def test_reciprocal_rank_fusion_rewards_agreement_and_keeps_the_first_ranking_on_ties() -> None:
    semantic = [Hit(1, 0.9), Hit(2, 0.8), Hit(3, 0.7)]
    keyword = [Hit(3, 9.0), Hit(4, 5.0)]
    fused = [h.image_id for h in rrf([semantic, keyword], 4)]
    assert fused == [3, 1, 2, 4], "in both rankings beats first in one; 2 and 4 tie and keep semantic's order"


def test_a_moved_picture_keeps_its_words_under_its_new_folder(engine: Engine, pictures: Path) -> None:
    from searchcore.stores.filters import Filters

    engine.ingest(pictures, ocr=True)
    (pictures / "2024").mkdir()
    (pictures / "signs" / "烤鸭.png").rename(pictures / "2024" / "烤鸭.png")

    assert engine.ingest(pictures).moved == 1
    found = engine.search_text("北京烤鸭", 3, mode="keyword", filters=Filters.parse(folder="2024"))
    assert [(r.path, r.text) for r in found] == [("2024/烤鸭.png", "欢迎光临北京烤鸭店")]
    assert engine.search_text("北京烤鸭", 3, mode="keyword", filters=Filters.parse(folder="signs")) == []


def test_the_keyword_index_keeps_the_command_line_quiet(settings: Settings, dataset: Path) -> None:
    env = settings_env(settings)
    for args in (("ingest", str(dataset), "--split", "train"), ("search", "圆形", "--mode", "hybrid")):
        done = run_cli(*args, env=env)
        assert done.returncode == 0, done.stderr
        assert done.stderr == "", f"jieba (imported by Milvus Lite) printed: {done.stderr[:300]}"


@pytest.mark.parametrize("old", ["jieba", "terms before folding"])
def test_a_text_index_made_before_fragment_search_is_rebuilt_when_opened(settings: Settings, torch_encoder: Encoder,
                                                                         pictures: Path, old: str) -> None:
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    engine = Engine(settings, encoder=torch_encoder)
    try:
        engine.ingest(pictures, ocr=True)
        assert by_path(engine.search_text("京烤", 3, mode="keyword")) == ["signs/烤鸭.png"]
        store = engine.vectors
        name = store.text_collection(settings.library)  # type: ignore[attr-defined]

        def make_old_index(client: Any) -> None:
            """The first text index's schema (its text analysed by jieba, no terms field), or the second's (a
            `terms` field of hex terms cut without folding traditional characters), with 烤鸭 written 烤鴨."""
            rows = client.query(name, filter="id >= 0", output_fields=["id", "text", "path", "taken"])
            client.drop_collection(name)
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            analysed = "text" if old == "jieba" else "terms"
            schema.add_field("text", DataType.VARCHAR, max_length=8192, enable_analyzer=old == "jieba",
                             analyzer_params={"tokenizer": "jieba"})
            if old != "jieba":
                schema.add_field("terms", DataType.VARCHAR, max_length=65535, enable_analyzer=True,
                                 analyzer_params={"type": "standard"})
                for row in rows:
                    row["text"] = row["text"].replace("烤鸭", "烤鴨")
                    pairs = [a + b for a, b in zip(row["text"], row["text"][1:])]
                    row["terms"] = " ".join(t.encode().hex() for t in [*row["text"], *pairs])
            schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
            schema.add_field("path", DataType.VARCHAR, max_length=1024)
            schema.add_field("taken", DataType.INT64)
            schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=[analysed],
                                         output_field_names=["sparse"]))
            index = MilvusClient.prepare_index_params()
            index.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
            client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
            client.insert(name, rows)

        store.run("make an old text index", make_old_index)  # type: ignore[attr-defined]
    finally:
        engine.close()

    engine = Engine(settings, encoder=torch_encoder)
    try:
        assert by_path(engine.search_text("京烤", 3, mode="keyword")) == ["signs/烤鸭.png"], "jieba cut 北京/烤鸭"
        assert by_path(engine.search_text("烤鸭店", 3, mode="keyword")) == ["signs/烤鸭.png"], "烤鴨 folds to 烤鸭"
        assert engine.texts is not None and engine.texts.count(settings.library) == 3
    finally:
        engine.close()


def test_an_excluded_description_pushes_down_pictures_that_look_like_it(engine: Engine, tmp_path: Path) -> None:
    """Pictures with no words at all: 「红色 排除 圆形」 can only act by their look (the query less half of the
    excluded description's embedding). Red circles leave the top 10; red squares and triangles stay."""
    root = tmp_path / "looks"
    root.mkdir()
    rng = random.Random(7)
    for n in range(126):
        color, shape = CLASSES[n % len(CLASSES)]
        draw(color, shape, rng, (96, 96)).save(root / f"{n:03d}.png")
    assert engine.ingest(root).added == 126

    def looks(results: list) -> list[tuple[str, str]]:
        return [CLASSES[int(Path(r.path).stem) % len(CLASSES)] for r in results]

    plain = looks(engine.search_text("红色", 10))
    assert ("红色", "圆形") in plain, "without the exclusion red circles are among the first ten"
    for options, query in (({"exclude": "圆形"}, "红色"), ({}, "红色 -圆形")):
        pushed = looks(engine.search_text(query, 10, **options))  # type: ignore[arg-type]
        assert ("红色", "圆形") not in pushed, pushed
        assert sum(color == "红色" for color, _ in pushed) >= 8, pushed
        assert {shape for color, shape in pushed if color == "红色"} == {"正方形", "三角形"}, pushed
