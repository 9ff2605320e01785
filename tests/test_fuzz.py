"""Property tests: whatever bytes a dataset line holds and whatever a user types as a query, the engine
answers with a record, a report, results or a SearchcoreError, never another exception."""

from __future__ import annotations

import base64
import io
import json
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from demo.shapes import draw
from searchcore.engine import Engine
from searchcore.errors import ImageDecodeError, RecordError, SearchcoreError
from searchcore.ids import MAX_ID
from searchcore.models.encoder import Encoder
from searchcore.sources.datasets import open_source
from searchcore.sources.imaging import decode_image
from tests.support import tiny_settings, write_split

# Damaged images make Pillow warn (truncated reads, corrupt EXIF) before it refuses or decodes them.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def picture(fmt: str, **options: object) -> bytes:
    image = draw("红色", "圆形", random.Random(0), (48, 48))
    if fmt == "GIF":
        options = {"save_all": True, "append_images": [image.rotate(90)], **options}
    buffer = io.BytesIO()
    image.convert("P" if fmt == "GIF" else "RGB").save(buffer, format=fmt, **options)
    return buffer.getvalue()


SEEDS = [picture("JPEG"), picture("JPEG", progressive=True), picture("PNG"), picture("GIF"), picture("WEBP"),
         picture("BMP"), picture("TIFF"), picture("ICO")]


@st.composite
def damaged_images(draw_: st.DrawFn) -> bytes:
    """A real image of some format, truncated, with bytes overwritten or inserted."""
    data = bytearray(draw_(st.sampled_from(SEEDS)))
    for _ in range(draw_(st.integers(0, 4))):
        at = draw_(st.integers(0, len(data) - 1))
        action = draw_(st.sampled_from(["flip", "insert", "delete", "max"]))
        if action == "flip":
            data[at] ^= 1 << draw_(st.integers(0, 7))
        elif action == "insert":
            data[at:at] = draw_(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del data[at:at + draw_(st.integers(1, 64))]
        elif action == "max":
            data[at:at + 4] = b"\xff\xff\xff\x7f"  # a huge length or dimension field
    if draw_(st.booleans()):
        data = data[:draw_(st.integers(0, len(data)))]
    return bytes(data)


image_ids = st.one_of(st.integers(-5, MAX_ID + 5).map(str), st.text(max_size=25))
tsv_lines = st.one_of(
    st.binary(max_size=400),
    st.tuples(st.integers(0, 99), st.sampled_from(SEEDS)).map(lambda p: b"%d\t" % p[0] + base64.b64encode(p[1])),
    st.tuples(image_ids, damaged_images()).map(lambda p: p[0].encode("utf-8", "surrogatepass") + b"\t"
                                               + base64.b64encode(p[1])),
    st.tuples(image_ids, st.binary(max_size=200)).map(lambda p: p[0].encode("utf-8", "surrogatepass") + b"\t"
                                                      + p[1]),
)


ONE_CAPTION = [json.dumps({"text_id": 1, "text": "图片", "image_ids": [1]}).encode()]


@FAST
@given(lines=st.lists(tsv_lines, min_size=1, max_size=4))
def test_any_tsv_line_is_a_record_or_a_reported_error(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for record in open_source(write_split(Path(tmp), lines, ONE_CAPTION), "valid").records:
            if record.error is not None:
                assert isinstance(record.error, RecordError) and str(record.error) and record.data is None
                continue
            assert isinstance(record.image_id, int) and 0 <= record.image_id <= MAX_ID
            assert isinstance(record.data, bytes)
            try:
                decoded = decode_image(record.data)
            except ImageDecodeError as exc:
                assert str(exc)
            else:
                assert decoded.image.mode == "RGB" and decoded.width * decoded.height > 0


@FAST
@given(data=damaged_images())
def test_damaged_images_decode_or_are_refused_with_a_reason(data: bytes) -> None:
    try:
        decoded = decode_image(data)
    except ImageDecodeError as exc:
        assert str(exc)
    else:
        assert decoded.image.mode == "RGB" and decoded.image.size == (decoded.width, decoded.height)
        assert decoded.data and decoded.format in {"JPEG", "PNG", "GIF", "WEBP", "BMP"}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, torch_encoder: Encoder) -> Iterator[Engine]:
    """One engine for every example, with a small library to search."""
    tmp = tmp_path_factory.mktemp("fuzz")
    eng = Engine(tiny_settings(tmp, model_cache, backend="torch", precision="fp32"), encoder=torch_encoder)
    lines = [f"{i}\t".encode() + base64.b64encode(SEEDS[i % 3]) for i in range(1, 7)]
    eng.ingest(write_split(tmp, lines, ONE_CAPTION), split="valid")
    yield eng
    eng.close()


@SLOW
@given(lines=st.lists(tsv_lines, min_size=1, max_size=3))
def test_ingesting_any_lines_gives_a_report_and_consistent_stores(engine: Engine, lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        report = engine.ingest(write_split(Path(tmp), lines, ONE_CAPTION), split="valid", library="fuzzed")
    assert all(b.reason for b in report.bad)
    assert sorted(engine.images.ids("fuzzed")) == sorted(engine.vectors.ids("fuzzed"))


queries = st.one_of(st.text(max_size=300), st.text(st.characters(codec="utf-8"), max_size=30),
                    st.text(st.characters(categories=["Cc", "Cf", "Cs", "Co", "Zs", "So"]), max_size=30),
                    st.sampled_from(["红色的圆形", "'; DROP TABLE searchcore_images; --", "😀" * 500]))
top_ks = st.one_of(st.integers(), st.integers(-1, 101), st.floats(allow_nan=True, allow_infinity=True),
                   st.integers(-1, 101).map(str), st.text(max_size=12), st.none(), st.booleans(),
                   st.decimals(allow_nan=True))


@SLOW
@given(text=queries, top_k=st.integers(1, 100))
def test_any_query_text_gives_results_or_a_searchcore_error(engine: Engine, text: str, top_k: int) -> None:
    try:
        results = engine.search_text(text, top_k)
    except SearchcoreError as exc:
        assert str(exc)
    else:
        assert 1 <= len(results) <= min(top_k, 6)
        assert [r.rank for r in results] == list(range(1, len(results) + 1))


@SLOW
@given(top_k=top_ks)
def test_any_top_k_gives_results_or_a_searchcore_error(engine: Engine, top_k: object) -> None:
    try:
        results = engine.search_text("红色的圆形", top_k)
    except SearchcoreError as exc:
        assert "top_k" in str(exc)
    else:
        assert 1 <= len(results) <= min(int(top_k), 6)  # type: ignore[call-overload]


@SLOW
@given(data=st.one_of(damaged_images(), st.binary(max_size=200)), top_k=st.integers(-3, 103))
def test_any_bytes_as_a_query_image_give_results_or_a_searchcore_error(engine: Engine, data: bytes,
                                                                       top_k: int) -> None:
    try:
        results = engine.search_image(data, top_k)
    except SearchcoreError as exc:
        assert str(exc)
    else:
        assert 1 <= len(results) <= min(top_k, 6)


def test_the_seed_images_are_all_readable() -> None:
    for data in SEEDS:
        assert Image.open(io.BytesIO(data)).size == (48, 48)
        decode_image(data)
