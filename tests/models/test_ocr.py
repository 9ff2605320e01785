"""OCR (issue 13): the words inside pictures come back exactly, in reading order, and nothing from pictures without."""

from __future__ import annotations

import logging
import random
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from demo.shapes import CLASSES, draw
from searchcore.errors import ConfigError
from searchcore.models import ocr
from searchcore.models.ocr import OcrReader, OcrText, load_ocr
from tests.support import cjk_font, sign

SIZE = (500, 375)


def chat() -> Image.Image:
    """A two-message chat screenshot: a white bubble on the left, a green one below it on the right."""
    image = Image.new("RGB", SIZE, (237, 237, 237))
    canvas = ImageDraw.Draw(image)
    font = cjk_font(24)
    for text, left, top, bubble in (("你好，明天一起吃饭吗？", 30, 80, (255, 255, 255)),
                                    ("好的，中午十二点见", 230, 170, (149, 236, 105))):
        width = canvas.textlength(text, font=font)
        canvas.rounded_rectangle((left - 12, top - 10, left + width + 12, top + 44), 8, fill=bubble)
        canvas.text((left, top), text, font=font, fill=(0, 0, 0))
    return image


def shapes(index: int, seed: int) -> Image.Image:
    """One of the demo library's pictures: a large solid shape on a grainy background, no text.

    At a picture's own scale the detector boxes such shapes, and the recognizer reads some of these
    (a green disc, a purple disc, a black square) as O or ■ with confidence 0.5 to 0.8.
    """
    return draw(*CLASSES[index], random.Random(seed), SIZE)


def shop_sign() -> Image.Image:
    return sign([("欢迎光临北京烤鸭店", (70, 160))])


def red_banner() -> Image.Image:
    return sign([("今日特价全场八折", (60, 150))], size=48, background=(200, 30, 30), ink=(255, 230, 0))


def small_print() -> Image.Image:
    return sign([("营业时间早上九点到晚上十点", (40, 300))], size=16)


TEXT_PICTURES = {shop_sign: "欢迎光临北京烤鸭店", chat: "你好，明天一起吃饭吗？\n好的，中午十二点见",
                 red_banner: "今日特价全场八折", small_print: "营业时间早上九点到晚上十点"}
NO_TEXT = [(3, 1), (12, 2), (16, 1), (1, 0), (8, 0)]  # (class, seed): disc, disc, square, square, triangle


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ocr_cache")


@pytest.fixture(scope="module")
def reader(cache: Path) -> OcrReader:
    """The default reader: bf16 where the CPU has it natively and the probe passes, else fp32."""
    return load_ocr(cache)


@pytest.mark.parametrize("picture", list(TEXT_PICTURES), ids=lambda picture: picture.__name__)
def test_reads_the_exact_text(reader: OcrReader, picture: Callable[[], Image.Image]) -> None:
    found = reader.read(picture())
    assert found.text == TEXT_PICTURES[picture]
    assert 0.9 < found.confidence <= 1.0


def test_lines_on_one_row_read_left_to_right(reader: OcrReader) -> None:
    # The right-hand word sits 6 px higher: sorting by the top edge alone would read it first.
    found = reader.read(sign([("北京", (60, 160)), ("上海", (330, 154))], size=48))
    assert found.text == "北京\n上海"


@pytest.mark.parametrize(("index", "seed"), NO_TEXT)
def test_pictures_without_text_read_nothing(reader: OcrReader, index: int, seed: int) -> None:
    assert reader.read(shapes(index, seed)) == OcrText("", 0.0)


def test_a_plain_gradient_reads_nothing(reader: OcrReader) -> None:
    ramp = np.tile(np.linspace(0, 255, SIZE[0], dtype=np.float32), (SIZE[1], 1))
    assert reader.read(Image.fromarray(np.stack([ramp] * 3, axis=2).astype(np.uint8))) == OcrText("", 0.0)


def test_reads_what_stock_rapidocr_reads(reader: OcrReader) -> None:
    from rapidocr_onnxruntime import RapidOCR

    stock = RapidOCR()
    for picture in (chat, small_print):  # two lines, and the smallest print; a stock read takes ~0.3 s
        image = picture()
        found, _ = stock(image)
        assert reader.read(image).text == "\n".join(line[1] for line in found)


def test_fp32_reads_what_the_default_precision_reads(reader: OcrReader, cache: Path) -> None:
    fp32 = load_ocr(cache, precision="fp32")
    assert fp32.precision == "fp32"
    pictures = [picture() for picture in TEXT_PICTURES]
    assert [found.text for found in fp32.read_many(pictures)] == [found.text for found in reader.read_many(pictures)]


def test_read_many_keeps_the_order_with_two_threads(cache: Path) -> None:
    reader = load_ocr(cache, threads=2)
    pictures = [shop_sign(), shapes(3, 1), red_banner(), shapes(16, 1), small_print()]
    texts = [found.text for found in reader.read_many(pictures)]
    assert texts == ["欢迎光临北京烤鸭店", "", "今日特价全场八折", "", "营业时间早上九点到晚上十点"]


def test_one_reader_serves_several_threads_at_once(reader: OcrReader) -> None:
    pictures = [shop_sign(), red_banner(), shapes(3, 1)] * 4
    with ThreadPoolExecutor(max_workers=4) as pool:
        texts = [found.text for found in pool.map(reader.read, pictures)]
    assert texts == ["欢迎光临北京烤鸭店", "今日特价全场八折", ""] * 4


def test_load_ocr_builds_one_reader_per_setting(reader: OcrReader, cache: Path) -> None:
    assert load_ocr(cache) is reader
    assert any((cache / "ov-compiled-blobs").rglob("*.blob")), "compiled networks are kept for the next start"


def test_a_transparent_picture_reads_as_on_white(reader: OcrReader) -> None:
    image = Image.new("RGBA", SIZE, (0, 0, 0, 0))
    ImageDraw.Draw(image).text((70, 160), "欢迎光临北京烤鸭店", font=cjk_font(40),
                               fill=(0, 0, 0, 255))
    assert reader.read(image).text == "欢迎光临北京烤鸭店"


def test_bf16_is_served_only_when_it_reads_the_probe_as_fp32(reader: OcrReader, cache: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    f32 = {name: reader._compile(name, ocr.ov.Type.f32) for name in ("det", "rec")}
    broken = dict(f32, det=_scaled_network(reader, "det", 0.0))  # all-zero weights: the detector finds no text
    assert ocr._judge_probe(reader, f32, f32) is None
    assert ocr._judge_probe(reader, broken, f32) is not None
    if "BF16" in reader._core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        with caplog.at_level(logging.WARNING, logger="searchcore.models.ocr"):
            bf16 = OcrReader(cache_dir=cache, precision="bf16")
        assert bf16.precision == "bf16", caplog.text


def test_without_rapidocr_load_ocr_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # what `import` sees when it is not installed
    with pytest.raises(ConfigError, match="pip install 'rapidocr-onnxruntime"):
        load_ocr(tmp_path)


def _scaled_network(reader: OcrReader, name: str, factor: float) -> ocr.ov.CompiledModel:
    """The network with every convolution's weights multiplied by factor, compiled in f32."""
    from openvino import opset13

    model = reader._models[name].clone()
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Convolution":
            weights = op.input_value(1)
            op.input(1).replace_source_output(opset13.multiply(weights, np.float32(factor)).output(0))
    return reader._core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
