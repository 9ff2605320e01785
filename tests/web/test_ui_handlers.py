"""The Gradio handlers, called directly, over the tiny model and real embedded stores."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from PIL import Image

from demo.shapes import draw
from searchcore.engine import Engine
from searchcore.stores.factory import open_stores
from searchcore.stores.filters import Filters
from searchcore.stores.image_db import MySQLImageStore
from searchcore.web.auth import Access, read_credentials
from searchcore.web.ui.build_tab import SOURCE_DATASET, SOURCE_UPLOAD
from searchcore.web.ui.formatting import highlight
from searchcore.web.ui.layout import SearchApp, build_ui
from searchcore.web.ui_text import I18N, language
from tests.support import MariaDBServer, sign, write_photo_folders

CHINESE = gr.Request(headers={"accept-language": "zh-CN,zh;q=0.9,en;q=0.8"})
# A folder of photos: each sub-folder's files dated by their mtime (no EXIF), 12 pictures a folder.


@pytest.fixture
def app(engine: Engine, dataset: Path) -> SearchApp:
    """Handlers over a library holding the dataset's train split (36 images, 2 per class)."""
    engine.ingest(dataset, split="train")
    return SearchApp(engine)


@pytest.fixture
def photos(engine: Engine, tmp_path: Path) -> SearchApp:
    """Handlers over library `photos`, ingested from a folder with the sub-folders of PHOTO_FOLDERS."""
    report = engine.ingest(write_photo_folders(tmp_path / "photos"), library="photos")
    assert report.added == 24, report.summary()
    return SearchApp(engine)


def captions(gallery: list[tuple[Image.Image, str]]) -> list[str]:
    return [text for _, text in gallery]


def shown_hits(state: dict) -> list[dict]:
    return [state["hits"][i] for i in state["shown"]]


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
    picture, meta, image_id, _, _ = app.select(state, gr.SelectData(None, {"index": 1, "value": None}))
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
    in_chinese, _ = app.ingest(SOURCE_DATASET, str(dataset), "valid", "", None, "shapes", request=CHINESE)
    assert in_chinese.startswith("图库 shapes：新增 0 张，已有 90 张，出错 0 个"), in_chinese
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
    assert "2 added" in text and "2 bad" in text
    assert "broken.png" in text and "notes.txt" in text
    assert list(scratch.iterdir()) == [], "the per-request upload folder must be removed"
    with engine.images._cursor() as cur:  # type: ignore[attr-defined]
        cur.execute("SELECT COUNT(*) FROM searchcore_files")
        assert cur.fetchone()[0] == 0, "a temporary upload folder leaves no file records behind"


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
                                                                      doomed_database: str,
                                                                      mariadb_server: MariaDBServer) -> None:
    images = MySQLImageStore(mariadb_server.url(doomed_database))
    engine = Engine(settings, open_stores(settings, images=images), encoder=torch_encoder)
    try:
        engine.ingest(dataset, split="train")
        app = SearchApp(engine)
        assert len(app.search("红色的圆形", 3, None)[0]) == 3
        conn = mariadb_server.connect(autocommit=True)
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


def test_a_folder_filter_shows_only_that_folders_images(photos: SearchApp) -> None:
    gallery, state, status = photos.search("红色的圆形", 96, "photos", folder="2024")
    assert state is not None and len(gallery) == 12, status
    assert all(h["path"].startswith("2024/城市/") for h in state["hits"]), [h["path"] for h in state["hits"]]
    assert all(" · 2024/城市/" in text and " · 2024-06-01 12:00" in text for text in captions(gallery)), gallery
    everything, _, _ = photos.search("红色的圆形", 96, "photos")
    assert len(everything) == 24


def test_a_date_range_keeps_the_pictures_taken_within_it(photos: SearchApp) -> None:
    _, since, _ = photos.search("蓝色的正方形", 96, "photos", since="2024-01-01")
    _, until, _ = photos.search("蓝色的正方形", 96, "photos", until="2023-12-31")
    _, june, _ = photos.search("蓝色的正方形", 96, "photos", since="2023-06-01", until="2023-06-01")
    assert since is not None and {h["path"].split("/")[0] for h in since["hits"]} == {"2024"}
    assert until is not None and {h["path"].split("/")[0] for h in until["hits"]} == {"2023"}
    assert june is not None and len(june["hits"]) == 12


def test_a_bad_date_is_a_warning_not_a_traceback(photos: SearchApp) -> None:
    with pytest.warns(UserWarning, match="YYYY-MM-DD"):
        gallery, state, _ = photos.search("红色的圆形", 96, "photos", since="2024-13-45")
    assert gallery == [] and state is None
    with pytest.warns(UserWarning, match="folder"):
        gallery, _, _ = photos.search("红色的圆形", 96, "photos", folder="../etc")
    assert gallery == []


def test_keyword_mode_finds_only_pictures_whose_text_has_the_words(app: SearchApp) -> None:
    keyword, _, _ = app.search("圆形", 12, None, mode="keyword")
    semantic, _, _ = app.search("圆形", 12, None, mode="semantic")
    assert keyword and all(text.endswith("的圆形") for text in captions(keyword)), captions(keyword)
    assert not all(text.endswith("的圆形") for text in captions(semantic)), "the train split has 12 circles"
    with pytest.warns(UserWarning, match="mode must be one of"):
        assert app.search("圆形", 12, None, mode="fuzzy")[0] == []


def test_results_come_24_a_page(engine: Engine, dataset: Path) -> None:
    engine.ingest(dataset, split="valid", library="shapes")
    app = SearchApp(engine)
    gallery, state, status = app.search("红色的圆形", 96, "shapes")
    assert state is not None and len(state["hits"]) == 90 and len(gallery) == 24
    assert [h["rank"] for h in shown_hits(state)] == list(range(1, 25))
    assert "90 results" in status and "page 1 of 4 · results 1–24" in status

    gallery, state, status = app.next_page(state)
    assert state is not None and [h["rank"] for h in shown_hits(state)] == list(range(25, 49))
    assert [text.split(" · ")[0] for text in captions(gallery)] == [f"#{r}" for r in range(25, 49)]
    assert "page 2 of 4 · results 25–48" in status
    _, _, image_id, _, _ = app.select(state, gr.SelectData(None, {"index": 0, "value": None}))
    assert image_id == str(state["hits"][24]["image_id"]), "a click on page 2 opens that page's result"

    for _ in range(3):  # past the last page it stays there
        gallery, state, status = app.next_page(state)
    assert len(gallery) == 90 - 72 and "page 4 of 4 · results 73–90" in status
    gallery, state, status = app.previous_page(state)
    assert "page 3 of 4 · results 49–72" in status


def test_the_library_line_shows_its_size_and_last_change(app: SearchApp) -> None:
    line = app.library_line(None)
    assert re.fullmatch(r"Library \*\*default\*\* · 36 images · updated \d{4}-\d\d-\d\d \d\d:\d\d", line), line
    assert "36 张图片 · 最近更新" in app.library_line(None, CHINESE)


def test_example_queries_come_from_the_librarys_captions(app: SearchApp) -> None:
    examples = app.example_queries(None)
    _, state, _ = app.search("红色的圆形", 96, None)
    assert state is not None and examples and set(examples) <= {h["caption"] for h in state["hits"]}, examples
    line, dataset = app.library_view(None)
    assert "36 images" in line and [row[0] for row in dataset.raw_samples] == examples


def test_a_chinese_browser_gets_chinese_tabs_and_status_lines(app: SearchApp) -> None:
    demo = build_ui(app)
    tabs = [block.label.key for block in demo.blocks.values() if isinstance(block, gr.Tab)]
    assert [I18N.translations_dict["zh"][key] for key in tabs] == ["搜索", "重复图片", "建库"]
    assert [I18N.translations_dict["en"][key] for key in tabs] == ["Search", "Duplicates", "Build"]
    assert I18N.translations_dict["zh"].keys() == I18N.translations_dict["en"].keys()

    _, _, status = app.search("红色的圆形", 12, None, request=CHINESE)
    assert status.startswith("在图库 **default** 中找到“红色的圆形”的 12 个结果"), status
    with pytest.warns(UserWarning, match="请先上传"):
        app.search_image(None, 12, None, request=CHINESE)
    assert [language(gr.Request(headers={"accept-language": h})) for h in
            ("zh-CN", "zh-TW,en;q=0.5", "en-US,zh-CN;q=0.9", "fr", "")] == ["zh", "zh", "en", "en", "en"]


def test_the_words_of_the_query_are_marked_in_the_text_read_in_a_picture() -> None:
    assert highlight("今天海边的日落很美", "海边 日落") == "今天<mark>海边</mark>的<mark>日落</mark>很美"
    assert highlight("一只猫在海边", "海边的猫") == "一只猫在<mark>海边</mark>", "pieces of 2+ characters"
    assert highlight("一只猫", "猫") == "一只<mark>猫</mark>", "a whole query word of one character"
    assert highlight("SALE <b>50%</b>", "sale") == "<mark>SALE</mark> \\<b\\>50%\\</b\\>"
    assert highlight("第一行\n第二行", "二行") == "第一行  \n第<mark>二行</mark>"


def test_a_simplified_query_marks_the_traditional_full_width_and_upper_case_words_it_matches() -> None:
    # The keyword index finds 會議室 for 会议室 and ＳＡＬＥ for sale; the detail view marks what it found.
    text = "臺灣會議室：ＳＡＬＥ 五折，Meeting at 3"
    assert highlight(text, "会议室 sale meeting") == ("臺灣<mark>會議室</mark>：<mark>ＳＡＬＥ</mark> 五折，"
                                                     "<mark>Meeting</mark> at 3")
    assert highlight(text, "台湾的会议") == "<mark>臺灣會議</mark>室：ＳＡＬＥ 五折，Meeting at 3", "pieces, folded"
    # A character that folds to several (the ligature ﬁ, NFKC's fi) is marked whole, and nothing beside it.
    assert highlight("ﬁle 文件", "file") == "<mark>ﬁle</mark> 文件"


def test_duplicates_are_shown_in_groups(photos: SearchApp, tmp_path: Path) -> None:
    folder = tmp_path / "copies"
    folder.mkdir()
    original = draw("紫色", "三角形", random.Random(7))
    original.save(folder / "a.png")
    original.save(folder / "b.jpg", quality=95)  # the same picture, other bytes
    photos.engine.ingest(folder, library="photos")
    _, state, _ = photos.search("紫色的三角形", 96, "photos", folder="")
    assert state is not None
    copies = {h["image_id"] for h in state["hits"] if h["path"] in ("a.png", "b.jpg")}

    gallery, status = photos.duplicates("photos", 0.95)
    groups: dict[str, set[int]] = {}
    for text in captions(gallery):
        group, image_id, score = text.split(" · ")
        assert group.startswith("group ") and 0 < float(score) <= 1  # a chain can link pairs below the threshold
        groups.setdefault(group, set()).add(int(image_id))
    assert copies in groups.values(), (copies, groups)
    assert "groups of near-identical images in library **photos**" in status
    with pytest.warns(UserWarning, match="does not exist"):
        assert photos.duplicates("nosuch", 0.95) == ([], "")


def test_build_tab_folder_ingest_with_sync_and_ocr(engine: Engine, tmp_path: Path) -> None:
    import random

    from searchcore.web.ui.build_tab import SOURCE_FOLDER

    folder = tmp_path / "album"
    folder.mkdir()
    sign([("欢迎光临北京烤鸭店", (30, 120))]).save(folder / "sign.png")
    for n in range(3):
        draw("红色", "圆形", random.Random(n)).save(folder / f"{n}.png")
    app = SearchApp(engine)

    text, _ = app.ingest(SOURCE_FOLDER, "", None, str(folder), None, "album", False, True)
    assert "4 added" in text, text
    found = engine.search_text("北京烤鸭", 1, library="album", mode="keyword")
    assert [r.path for r in found] == ["sign.png"] and found[0].text == "欢迎光临北京烤鸭店"

    (folder / "0.png").unlink()
    kept, _ = app.ingest(SOURCE_FOLDER, "", None, str(folder), None, "album", False, False)
    assert "1 files missing" in kept, kept
    synced, _ = app.ingest(SOURCE_FOLDER, "", None, str(folder), None, "album", True, False)
    assert "1 removed" in synced, synced
    assert engine.info("album").count == 3


@pytest.mark.parametrize("call, chinese", [
    (lambda e: e.search_text("   ", 5), "搜索内容为空"),
    (lambda e: e.search_text("猫", 5000), "结果数必须是 1 到 1000"),
    (lambda e: e.search_text("猫", 5, library="nowhere"), "图库 nowhere 不存在或为空"),
    (lambda e: e.search_text("猫", 5, mode="fuzzy"), "搜索方式必须是"),
    (lambda e: Filters.parse(until="2024-02-30"), "截止日期必须写成 YYYY-MM-DD"),
    (lambda e: Filters.parse(since="2024-03-01", until="2024-02-01"), "晚于截止日期"),
    (lambda e: Filters.parse(folder="a/../b"), "文件夹必须是图库文件夹内的相对路径"),
    (lambda e: e.search_similar("123", 5), "图片 123 不在图库"),
])
def test_engine_errors_reach_a_chinese_user_in_chinese(engine: Engine, dataset: Path, call: Any,
                                                       chinese: str) -> None:
    from searchcore.errors import SearchcoreError
    from searchcore.web.ui_text import error_text

    engine.ingest(dataset, split="train")
    with pytest.raises(SearchcoreError) as raised:
        call(engine)
    assert chinese in error_text("zh", raised.value)
    assert error_text("en", raised.value) == str(raised.value)
