"""Why a record was skipped is a kind: every RecordError kind searchcore makes reads in English and Chinese with its
fields filled in, and the reasons real readers give render whole in Chinese (an error given as a field too)."""

from __future__ import annotations

import ast
import io
import pickle
import string
from pathlib import Path

import pytest
from PIL import Image

from searchcore.errors import MESSAGES, ImageDecodeError, RecordError, VideoDecodeError
from searchcore.indexing.report import IngestReport
from searchcore.indexing.uploads import ingest_uploads
from searchcore.records import BadRecord
from searchcore.sources.chinese_clip import read_texts, tsv_records
from searchcore.sources.datasets import open_source
from searchcore.sources.imaging import decode_image
from searchcore.sources.videos import probe_video
from tests.test_error_kinds import PACKAGE, fields, has_chinese

RECORD_CLASSES = {"RecordError", "ImageDecodeError", "VideoDecodeError"}


def record_kinds() -> set[str]:
    """The literal kinds searchcore gives a RecordError (or a decode error, which is one)."""
    kinds: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in RECORD_CLASSES
                    and node.args):
                continue
            first = node.args[0]
            options = [first.body, first.orelse] if isinstance(first, ast.IfExp) else [first]
            kinds |= {o.value for o in options if isinstance(o, ast.Constant) and isinstance(o.value, str)}
    return kinds


def sample(template: str) -> dict[str, object]:
    """A value for each field of a template: a number where its format asks for one, else a word."""
    return {name: 1.5 if spec.endswith(("f", "g")) else f"<{name}>"
            for _, name, spec, _ in string.Formatter().parse(template) if name}


KINDS = sorted(record_kinds())


def test_the_readers_give_record_kinds() -> None:
    assert {"file_unreadable", "tsv_no_tab", "base64_invalid", "not_image_name", "video_no_frame",
            "image_corrupt", "stored_image_bad"} <= set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_every_record_kind_renders_in_both_languages_with_its_fields(kind: str) -> None:
    english, chinese = MESSAGES[kind]
    values = sample(english)
    error = RecordError(kind, **values)
    assert str(error) == error.render("en") == english.format(**values)
    zh = error.render("zh")
    assert zh == chinese.format(**values) and has_chinese(zh) and zh != str(error)
    for name in fields(chinese):  # each field the Chinese names shows its value
        assert str(values[name]).strip("<>") in zh, (kind, name, zh)
    again = pickle.loads(pickle.dumps(error))  # records cross process boundaries (reader pools, Ray)
    assert (again.kind, again.params, again.render("zh")) == (kind, values, zh)
    assert RecordError.from_json(error.to_json()).render("zh") == zh


def test_a_reason_given_as_a_field_renders_in_the_same_language() -> None:
    inner = RecordError("base64_invalid", reason="Incorrect padding")
    outer = RecordError("image_id_bad", image_id=7, reason=inner)
    assert str(outer) == "image id 7: invalid base64 (Incorrect padding)"
    assert outer.render("zh") == "图片 ID 7：base64 编码无效（Incorrect padding）"
    assert BadRecord(3, outer, "valid_imgs.tsv").to_json() == {"line": 3, "reason": str(outer),
                                                               "file": "valid_imgs.tsv"}
    assert RecordError.from_json(outer.to_json()).render("zh") == outer.render("zh")


def english_words(kind: str) -> str:
    """The English wording's text before its first field or bracket: what must not show in a Chinese render."""
    return MESSAGES[kind][0].split("{")[0].split("(")[0].strip()


def assert_chinese(error: RecordError) -> None:
    zh = error.render("zh")
    assert has_chinese(zh), zh
    for kind in _kinds_in(error):
        words = english_words(kind)
        assert not words or words not in zh, (kind, zh)


def _kinds_in(error: RecordError) -> list[str]:
    nested = [v for v in error.params.values() if isinstance(v, RecordError)]
    return [error.kind, *(k for v in nested for k in _kinds_in(v))]


def test_real_readers_reasons_render_whole_in_chinese(tmp_path: Path) -> None:
    tsv = tmp_path / "valid_imgs.tsv"
    tsv.write_bytes(b"12 no tab here\nabc\tAAAA\n13\t!!notbase64!!\n")
    texts = tmp_path / "valid_texts.jsonl"
    texts.write_bytes(b'{"text_id": 1}\n\xff\xfe\n[1, 2]\n')
    reasons = [r.error for r in tsv_records(tsv, {})]
    _, problems = read_texts(tmp_path, "valid")
    reasons += [b.reason for b in problems]
    assert [r.kind for r in reasons if r is not None] == ["tsv_no_tab", "image_id_not_integer", "image_id_bad",
                                                         "text_entry_invalid", "line_not_utf8",
                                                         "text_entry_invalid"]
    for reason in reasons:
        assert reason is not None
        assert_chinese(reason)


def test_decode_errors_are_record_kinds(tmp_path: Path) -> None:
    picture = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(picture, "JPEG")
    with pytest.raises(ImageDecodeError) as image:
        decode_image(picture.getvalue()[:200])
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_bytes(b"not a video at all" * 20)
    found = [image.value]
    for name in ("empty.mp4", "text.mp4"):
        with pytest.raises(VideoDecodeError) as video:
            probe_video(tmp_path / name)
        found.append(video.value)
    assert [e.kind for e in found] == ["image_corrupt", "video_file_empty", "video_unknown_format"]
    for error in found:
        assert isinstance(error, RecordError) and isinstance(error, ValueError)
        assert_chinese(error)


def test_a_folder_and_an_upload_report_their_skipped_files_as_kinds(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "empty.mp4").write_bytes(b"")
    kinds = {r.file: r.error.kind for r in open_source(folder).records if r.error is not None}
    assert kinds == {"empty.jpg": "file_empty", "empty.mp4": "video_file_empty"}

    note = tmp_path / "notes.txt"
    note.write_text("not a picture")
    report = ingest_uploads([note], lambda _: IngestReport("uploads"))  # the folder it is given holds no picture
    [bad] = report.bad
    assert (bad.file, bad.reason.kind) == ("notes.txt", "not_image_name")
    assert str(bad.reason).startswith("not an image file name (.jpg")
    assert bad.reason.render("zh").startswith("不是图片文件名（.jpg")


def test_a_reason_that_was_text_in_the_api_stays_text_and_still_reads_in_chinese() -> None:
    from searchcore.errors import QueryError

    reason = RecordError("not_image_name", suffixes=".jpg, .png")
    error = QueryError("upload_not_image", name="a.txt", reason=reason)
    assert error.to_json()["params"]["reason"] == str(reason)  # the JSON field is the English text, as before
    assert reason.render("zh") in error.render("zh")  # while the Chinese message says it in Chinese
    unusable = QueryError("query_image_unusable", reason=RecordError("not_image_name", suffixes=".jpg"))
    assert unusable.to_json()["params"]["reason"]["kind"] == "not_image_name"  # a kind there since it began
