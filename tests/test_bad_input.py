"""Bad input never stops an ingest or a search: each bad record is named with its line and reason, the
rest is kept, and a bad query or library name is a SearchcoreError before any store is touched."""

from __future__ import annotations

import base64
import functools
import io
import json
import random
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo.shapes import draw
from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.errors import DatasetError, ImageDecodeError, LibraryError, QueryError, RecordError, SearchcoreError
from searchcore.models.encoder import Encoder
from searchcore.sources.imaging import decode_image
from tests.support import run_cli, settings_env, tiny_settings, write_split

# ---------------------------------------------------------------- pictures that are hard to get right


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@functools.cache
def shape(color: str, shape_name: str, seed: int) -> bytes:
    """One JPEG of a coloured shape (cached: the drawing's noise is not seeded)."""
    return encode(draw(color, shape_name, random.Random(seed), (64, 64)), "JPEG")


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (10^10 by default)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def exif_rotated_jpeg() -> bytes:
    """80x40 pixels as stored, blue left half and red right half, EXIF orientation 6 (rotate 90° clockwise):
    shown upright it is 40x80 with blue on top."""
    image = Image.new("RGB", (80, 40), (220, 30, 30))
    image.paste((30, 70, 220), (0, 0, 40, 40))
    exif = image.getexif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif.tobytes(), quality=95)


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (48, 32), (0, 230, 230, 0)), "JPEG")


def png_16bit() -> bytes:
    image = Image.fromarray(np.tile(np.linspace(0, 65535, 48).astype(np.uint16), (32, 1)))
    assert image.mode == "I;16"
    return encode(image, "PNG")


def palette_png_with_transparency() -> bytes:
    """Left half transparent (palette index 0), right half green (index 1)."""
    image = Image.new("P", (40, 20), 0)
    image.putpalette([255, 0, 0, 0, 200, 0] + [0] * 762)
    image.paste(1, (20, 0, 40, 20))
    return encode(image, "PNG", transparency=0)


def animated_gif() -> bytes:
    """Two frames: red then blue. The first frame is the picture."""
    frames = [Image.new("RGB", (32, 32), (220, 30, 30)), Image.new("RGB", (32, 32), (30, 70, 220))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def big_png(megabytes: float) -> bytes:
    """An uncompressed PNG of about this many megabytes (well under the pixel limit)."""
    side = int((megabytes * 2**20 / 3) ** 0.5) + 1
    return encode(Image.new("RGB", (side, side), (30, 170, 50)), "PNG", compress_level=0)


# ---------------------------------------------------------------- datasets


def tsv_line(image_id: int | str, data: bytes) -> bytes:
    return f"{image_id}\t".encode() + base64.b64encode(data)


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.server)])
def any_engine(request: pytest.FixtureRequest, settings: Settings, torch_encoder: Encoder) -> Iterator[Engine]:
    """The tiny-model engine over SQLite, or over a database on the real MariaDB."""
    if request.param == "mariadb":
        settings = settings.replace(db_url=request.getfixturevalue("mariadb_url"))
    engine = Engine(settings, encoder=torch_encoder)
    yield engine
    engine.close()


def unique_library(engine: Engine, stem: str) -> str:
    """A library name not yet used in this (possibly shared) MariaDB database."""
    name = f"{stem}_{random.randrange(16**8):08x}"
    assert name not in engine.images.libraries()
    return name


# ---------------------------------------------------------------- ingest


GOOD = {1: ("红色", "圆形"), 21: ("蓝色", "正方形")}
BAD_LINES = {  # line -> words its reason must contain
    2: "no tab", 3: "base64", 4: "not an image", 5: "truncated", 6: "empty", 7: "decompression bomb",
    13: "duplicate image id 1", 14: "not an integer",
}


def mixed_split(root: Path) -> Path:
    """Good images, tricky-but-valid images and every kind of bad record in one split."""
    truncated = shape("绿色", "三角形", 3)
    lines = [
        tsv_line(1, shape("红色", "圆形", 1)),                 # 1 good
        b"2" + base64.b64encode(shape("红色", "圆形", 2)),      # 2 no tab
        b"3\t!!!this is not base64***",                        # 3 invalid base64
        tsv_line(4, b"just some text, not a picture"),         # 4 base64 of something else
        tsv_line(5, truncated[: len(truncated) * 2 // 3]),     # 5 truncated JPEG
        b"6\t",                                                # 6 zero bytes
        tsv_line(7, png_bomb()),                               # 7 claims 100k x 100k pixels
        tsv_line(8, exif_rotated_jpeg()),                      # 8 EXIF orientation 6
        tsv_line(9, cmyk_jpeg()),                              # 9 CMYK
        tsv_line(10, png_16bit()),                             # 10 16-bit grey PNG
        tsv_line(11, palette_png_with_transparency()),         # 11 palette PNG with transparency
        tsv_line(12, animated_gif()),                          # 12 animated GIF
        tsv_line(1, shape("黑色", "圆形", 9)),                  # 13 id 1 again, other bytes
        tsv_line("abc", shape("黑色", "圆形", 9)),              # 14 id not an integer
        tsv_line(8, exif_rotated_jpeg()),                      # 15 id 8 again, same bytes: present
        tsv_line(21, shape("蓝色", "正方形", 21)),              # 16 good
    ]
    texts = [json.dumps({"text_id": 1, "text": "红色的圆形", "image_ids": [1]}, ensure_ascii=False).encode(),
             '{"text_id": 2, "text": "坏的一行", "image_ids": [8]}'.encode("gbk"),  # not UTF-8
             json.dumps({"text_id": 3, "text": "蓝色的正方形", "image_ids": [21]}, ensure_ascii=False).encode()]
    return write_split(root, lines, texts)


def test_every_bad_record_is_reported_with_line_and_reason_and_the_rest_kept(any_engine: Engine,
                                                                          tmp_path: Path) -> None:
    engine = any_engine
    library = unique_library(engine, "mixed")
    report = engine.ingest(mixed_split(tmp_path / "mixed"), split="valid", library=library)

    reasons = {(b.file, b.line): str(b.reason) for b in report.bad}  # str() of a RecordError is its English
    expected = {("valid_imgs.tsv", line) for line in BAD_LINES} | {("valid_texts.jsonl", 2)}
    assert set(reasons) == expected, reasons
    duplicate = next(b.reason for b in report.bad if b.line == 13)
    assert isinstance(duplicate, RecordError) and (duplicate.kind, duplicate.params) == (
        "record_duplicate_id", {"image_id": 1, "first_line": 1})
    assert duplicate.render("zh") == "图片 id 1 重复，且内容与第 1 行不同"
    assert report.to_json()["bad"][[b.line for b in report.bad].index(13)]["reason"] == (
        "duplicate image id 1 with different content from line 1")
    for line, words in BAD_LINES.items():
        assert words in reasons[("valid_imgs.tsv", line)], (line, reasons[("valid_imgs.tsv", line)])
    assert "UTF-8" in reasons[("valid_texts.jsonl", 2)]

    kept = {1, 8, 9, 10, 11, 12, 21}
    assert (report.added, report.present) == (len(kept), 1)
    assert sorted(engine.images.ids(library)) == sorted(engine.vectors.ids(library)) == sorted(kept)
    stored = engine.images.get_many(library, sorted(kept))
    assert stored[1].captions == ["红色的圆形"] and stored[21].captions == ["蓝色的正方形"]
    assert stored[1].data == shape("红色", "圆形", 1), "the first of two records with one id is kept"
    # the good pictures are found by their captions; nothing bad is ever a result
    assert {r.image_id for r in engine.search_text("红色的圆形", 100, library=library)} <= kept


def test_exif_rotated_jpeg_is_stored_and_served_upright(engine: Engine, tmp_path: Path) -> None:
    engine.ingest(write_split(tmp_path / "exif", [tsv_line(8, exif_rotated_jpeg())]), split="valid")
    stored = engine.get_image(8)
    assert (stored.width, stored.height) == (40, 80)
    served = Image.open(io.BytesIO(stored.data))  # as a browser would show it, orientation tag or not
    assert served.getexif().get(0x0112, 1) == 1 and served.size == (40, 80)
    top, bottom = served.convert("RGB").getpixel((20, 15)), served.convert("RGB").getpixel((20, 65))
    assert top[2] > 180 and top[0] < 80, f"top should be blue, got {top}"
    assert bottom[0] > 180 and bottom[2] < 80, f"bottom should be red, got {bottom}"


def test_unusual_formats_are_stored_and_decoded_to_the_right_colours(engine: Engine, tmp_path: Path) -> None:
    lines = [tsv_line(9, cmyk_jpeg()), tsv_line(10, png_16bit()), tsv_line(11, palette_png_with_transparency()),
             tsv_line(12, animated_gif())]
    report = engine.ingest(write_split(tmp_path / "formats", lines), split="valid")
    assert report.added == 4 and not report.bad
    stored = engine.images.get_many("default", [9, 10, 11, 12])
    assert {i: (s.format, s.width, s.height) for i, s in stored.items()} == {
        9: ("JPEG", 48, 32), 10: ("PNG", 48, 32), 11: ("PNG", 40, 20), 12: ("GIF", 32, 32)}
    pictures = {i: decode_image(s.data).image for i, s in stored.items()}
    red = pictures[9].getpixel((10, 10))
    assert red[0] > 200 and red[1] < 60, f"CMYK (0, 230, 230, 0) is red, got {red}"
    dark, light = pictures[10].getpixel((0, 5)), pictures[10].getpixel((47, 5))
    assert dark[0] < 10 and light[0] > 245, "16-bit grey keeps its full range"
    assert pictures[11].getpixel((5, 5)) == (255, 255, 255), "transparency is flattened onto white"
    assert pictures[11].getpixel((30, 5)) == (0, 200, 0)
    first = pictures[12].getpixel((5, 5))
    assert first[0] > 200 and first[2] < 60, "an animated GIF is its first (red) frame"
    # and the vector is the first frame's
    vector = engine.vectors.vectors("default", [12])[12]
    red_frame, blue_frame = engine.encoder.encode_images([Image.new("RGB", (32, 32), c) for c in
                                                          ((220, 30, 30), (30, 70, 220))])
    assert float(vector @ red_frame) > 0.99 > float(vector @ blue_frame)


def test_a_50_mb_image_is_stored_by_sqlite_and_refused_by_mariadb_with_the_reason(
        any_engine: Engine, tmp_path: Path) -> None:
    engine = any_engine
    library = unique_library(engine, "big")
    data = big_png(50)
    assert len(data) > 50 * 2**20
    report = engine.ingest(write_split(tmp_path / "big", [tsv_line(1, shape("红色", "圆形", 1)), tsv_line(2, data)]),
                           split="valid", library=library)
    if engine.images.backend == "sqlite":
        assert report.added == 2 and not report.bad
        stored = engine.get_image(2, library)
        assert stored.data == data and (stored.width, stored.height) == Image.open(io.BytesIO(data)).size
    else:  # MariaDB's max_allowed_packet (16 MB by default) bounds one row
        assert report.added == 1
        [bad] = report.bad
        assert bad.line == 2 and "over the store's limit" in str(bad.reason) and "50." in str(bad.reason)
        assert sorted(engine.images.ids(library)) == sorted(engine.vectors.ids(library)) == [1]


@pytest.mark.parametrize("content", ["noise", "black"])
def test_an_image_just_under_the_mariadb_limit_is_stored(settings: Settings, torch_encoder: Encoder,
                                                        mariadb_url: str, tmp_path: Path, content: str) -> None:
    """The limit leaves room for the escaping that doubles a blob of zero bytes inside the INSERT."""
    engine = Engine(settings.replace(db_url=mariadb_url), encoder=torch_encoder)
    try:
        library = unique_library(engine, "edge")
        side = int(((engine.images.max_blob_bytes - 100_000) / 3) ** 0.5)
        pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8) \
            if content == "noise" else np.zeros((side, side, 3), dtype=np.uint8)
        data = encode(Image.fromarray(pixels), "PNG", compress_level=0)
        assert engine.images.max_blob_bytes - 150_000 < len(data) < engine.images.max_blob_bytes
        report = engine.ingest(write_split(tmp_path / "edge", [tsv_line(1, data)]), split="valid", library=library)
        assert report.added == 1 and not report.bad, report.bad
        assert engine.get_image(1, library).data == data
    finally:
        engine.close()


def test_an_image_that_grows_when_made_upright_is_held_to_the_store_limit() -> None:
    noisy = Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 300, 3), dtype=np.uint8))
    exif = noisy.getexif()
    exif[0x0112] = 6
    data = encode(noisy, "JPEG", quality=10, exif=exif.tobytes())
    assert len(decode_image(data, max_bytes=len(data) * 100).data) > len(data) + 1000  # re-encoded upright
    with pytest.raises(ImageDecodeError, match="once made upright"):
        decode_image(data, max_bytes=len(data) + 1000)


def test_a_split_without_its_texts_file_is_refused_and_nothing_stored(engine: Engine, tmp_path: Path) -> None:
    root = write_split(tmp_path / "notexts", [tsv_line(1, shape("红色", "圆形", 1))])
    (root / "valid_texts.jsonl").unlink()
    with pytest.raises(DatasetError, match="valid_texts.jsonl is missing"):
        engine.ingest(root, split="valid")
    assert engine.vectors.libraries() == [] and engine.images.libraries() == {}


def test_missing_texts_and_unknown_split_exit_1_from_the_cli(settings: Settings, tmp_path: Path) -> None:
    root = write_split(tmp_path / "ds", [tsv_line(1, shape("红色", "圆形", 1))])
    env = settings_env(settings)
    done = run_cli("ingest", str(root), "--split", "nope", env=env)
    assert done.returncode == 1 and "split 'nope' not found" in done.stderr and "Traceback" not in done.stderr
    (root / "valid_texts.jsonl").unlink()
    done = run_cli("ingest", str(root), "--split", "valid", env=env)
    assert done.returncode == 1 and "valid_texts.jsonl is missing" in done.stderr
    assert "Traceback" not in done.stderr
    engine = Engine(settings)
    try:
        assert engine.vectors.libraries() == [] and engine.images.libraries() == {}
    finally:
        engine.close()


# ---------------------------------------------------------------- search


@pytest.fixture(scope="module")
def searchable(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, torch_encoder: Encoder) -> Iterator[Engine]:
    """A small library of red circles and blue squares, shared by the query tests."""
    tmp = tmp_path_factory.mktemp("searchable")
    engine = Engine(tiny_settings(tmp, model_cache, backend="torch", precision="fp32"), encoder=torch_encoder)
    lines = [tsv_line(i, shape(*GOOD[1 if i % 2 else 21], i)) for i in range(1, 13)]
    engine.ingest(write_split(tmp / "ds", lines), split="valid")
    yield engine
    engine.close()


@pytest.mark.parametrize("query", ["红色的圆形", "x" * 10_000, "😀🔴🟦", "'; DROP TABLE searchcore_images; --",
                                   "红色\x00\x07的\x1b[31m圆形\u200b", "\U0010ffff红"])
def test_odd_queries_still_return_results(searchable: Engine, query: str) -> None:
    results = searchable.search_text(query, 5)
    assert 1 <= len(results) <= 5 and all(r.data for r in results)
    assert searchable.images.count("default") == 12, "the query never reached SQL"


@pytest.mark.parametrize("query", ["", "   \t\n ", "\x00\x01\x7f", "\u200b\u200e", None, 42, b"bytes"])
def test_empty_or_non_text_query_is_a_query_error(searchable: Engine, query: object) -> None:
    with pytest.raises(QueryError):
        searchable.search_text(query, 5)


@pytest.mark.parametrize("top_k", [0, -1, 1001, "abc", 2.5, None, True, float("nan"), float("inf"), 10**100, "1e400"])
def test_bad_top_k_is_a_query_error(searchable: Engine, top_k: object) -> None:
    with pytest.raises(QueryError, match="top_k"):
        searchable.search_text("红色的圆形", top_k)


@pytest.mark.parametrize("top_k, expected", [(1, 1), (100, 12), ("7", 7), (5.0, 5)])
def test_top_k_at_the_limits_and_as_text_is_accepted(searchable: Engine, top_k: object, expected: int) -> None:
    assert len(searchable.search_text("蓝色的正方形", top_k)) == expected


@pytest.mark.parametrize("top_k", ["0", "-1", "1001", "abc"])
def test_cli_bad_top_k_exits_1_with_a_message(settings: Settings, top_k: str) -> None:
    done = run_cli("search", "红色的圆形", "--top-k", top_k, env=settings_env(settings))
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: top_k") and "Traceback" not in done.stderr


BAD_NAMES = ["a; DROP TABLE searchcore_images", "../x", "名字", "x" * 65, "a\n", "a b", "a/../../b", "1a"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_library_names_are_refused_before_touching_either_store(any_engine: Engine, tmp_path: Path,
                                                                    name: str) -> None:
    engine = any_engine
    before = (engine.images.libraries(), [m.library for m in engine.vectors.libraries()])
    root = write_split(tmp_path / "ds", [tsv_line(1, shape("红色", "圆形", 1))])
    calls = [lambda: engine.ingest(root, split="valid", library=name),
             lambda: engine.search_text("红色的圆形", 5, library=name),
             lambda: engine.search_image(shape("红色", "圆形", 1), 5, library=name),
             lambda: engine.search_similar(1, 5, library=name), lambda: engine.get_image(1, name),
             lambda: engine.info(name), lambda: engine.drop(name), lambda: engine.check(name)]
    for call in calls:
        with pytest.raises(LibraryError, match="invalid library name"):
            call()
    assert (engine.images.libraries(), [m.library for m in engine.vectors.libraries()]) == before


@pytest.mark.parametrize("name", ["a; DROP TABLE searchcore_images", "../x", "名字", "x" * 65])
def test_cli_bad_library_name_exits_1_and_creates_no_file(settings: Settings, tmp_path: Path, name: str) -> None:
    work = tmp_path / "fresh"
    work.mkdir()
    env = {**settings_env(settings), "SEARCHCORE_MILVUS_URI": str(work / "m.db"),
           "SEARCHCORE_DB_URL": str(work / "i.db")}
    for args in (["search", "红色的圆形"], ["ingest", str(tmp_path)], ["drop"], ["info"]):
        done = run_cli(*args, "--library", name, env=env, cwd=work)
        assert done.returncode == 1 and "invalid library name" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert list(work.iterdir()) == []


def test_bad_image_query_is_a_query_error(searchable: Engine) -> None:
    for data in (b"", b"not an image", png_bomb()):
        with pytest.raises(QueryError, match="query image"):
            searchable.search_image(data, 5)
    for image_id in ("abc", None, 10**30, -1):
        with pytest.raises(SearchcoreError):
            searchable.search_similar(image_id, 5)
