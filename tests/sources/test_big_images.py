"""Big phone photos take a fast reduced decode that the model cannot tell apart; HEIC, AVIF and TIFF ingest."""

from __future__ import annotations

import contextlib
import io
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pillow_heif import register_heif_opener

from demo.shapes import draw
from searchcore.engine import Engine
from searchcore.models.encoder import Encoder
from searchcore.models.preprocess import preprocess
from searchcore.sources.datasets import folder_image_id
from searchcore.sources.imaging import decode_image


def photo(width: int, height: int, seed: int) -> Image.Image:
    """Photo-like content: smooth colour gradients, a few soft-edged shapes, and sensor-like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([80 + 120 * x / width, 60 + 140 * y / height, 200 - 100 * (x + y) / (width + height)], axis=-1)
    image = Image.fromarray(base.astype(np.uint8))
    pen = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(min(width, height) // 20, min(width, height) // 3))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            pen.ellipse((x0, y0, x0 + size, y0 + size), fill=fill)
        else:
            pen.rectangle((x0, y0, x0 + size, y0 + size // 2), fill=fill)
    noisy = np.asarray(image, dtype=np.int16) + rng.normal(0, 6, (height, width, 3)).astype(np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def jpeg(image: Image.Image, orientation: int = 1) -> bytes:
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    image.save(buffer, format="JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def encoded(image: Image.Image, fmt: str) -> bytes:
    """The picture as HEIF, AVIF or TIFF bytes (pillow-heif writes HEIF, Pillow the others)."""
    register_heif_opener()
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt in ("HEIF", "AVIF") else {}))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def big_jpegs() -> dict[str, bytes]:
    """Two 12-megapixel phone JPEGs, one stored upright, one rotated by its EXIF orientation 6; and two between two
    and four times the model's input (decoded at 1/2 and 1/4 scale since BIG went from 4 to 2)."""
    return {"upright": jpeg(photo(4000, 3000, seed=1)), "rotated": jpeg(photo(4000, 3000, seed=2), orientation=6),
            "800x600": jpeg(photo(800, 600, seed=6)), "1600x1200": jpeg(photo(1600, 1200, seed=7))}


def both_paths(data: bytes, resolution: int) -> np.ndarray:
    """[2,3,R,R]: Chinese-CLIP's own transform of the full decode, then the engine's fast path."""
    from cn_clip.clip import image_transform

    full = image_transform(resolution)(decode_image(data).image).numpy()
    fast = preprocess(decode_image(data, target=resolution).image, resolution)
    return np.stack([full, fast])


def exact_resize_pixels(data: bytes, resolution: int) -> np.ndarray:
    """The model input from a full decode and a single exact bicubic resize (the path before the fast one)."""
    exact = decode_image(data).image.resize((resolution, resolution), Image.Resampling.BICUBIC)
    return preprocess(exact, resolution)  # already R×R: preprocess's resize is a copy


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_fast_decode_matches_full_decode_on_tiny_model(torch_encoder: Encoder, big_jpegs: dict[str, bytes]) -> None:
    for name, data in big_jpegs.items():
        full, fast = torch_encoder.encode_pixels(both_paths(data, torch_encoder.resolution))
        assert cosine(full, fast) >= 0.999, name


def test_fast_decode_matches_full_decode_on_rn50(big_jpegs: dict[str, bytes]) -> None:
    torch = pytest.importorskip("torch")
    from cn_clip.clip.utils import create_model

    torch.manual_seed(0)  # random weights, built in memory: no 300 MB checkpoint to fetch or cache
    with contextlib.redirect_stdout(io.StringIO()):
        model = create_model("RN50@RBT3-chinese").float().eval()
    resolution = model.visual.input_resolution
    for name, data in big_jpegs.items():
        with torch.no_grad():
            full, fast = model.encode_image(torch.from_numpy(both_paths(data, resolution))).numpy()
        assert cosine(full, fast) >= 0.999, name


def test_fast_decode_keeps_original_bytes_and_size(big_jpegs: dict[str, bytes]) -> None:
    upright = decode_image(big_jpegs["upright"], target=224)
    assert (upright.width, upright.height, upright.format) == (4000, 3000, "JPEG")
    assert upright.data == big_jpegs["upright"]
    assert max(upright.image.size) < 4000  # the model got the reduced decode
    rotated = decode_image(big_jpegs["rotated"], target=224)
    assert (rotated.width, rotated.height) == (3000, 4000)
    assert Image.open(io.BytesIO(rotated.data)).size == (3000, 4000)  # stored upright at full size
    assert rotated.image.width < rotated.image.height
    for name, scale in (("800x600", 2), ("1600x1200", 4)):  # DCT scaling down to no less than the input
        mid = decode_image(big_jpegs[name], target=224)
        assert (mid.image.width * scale, mid.image.height * scale) == (mid.width, mid.height), name
        assert mid.data == big_jpegs[name]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_image_near_input_size_keeps_exact_pixels(fmt: str) -> None:
    buffer = io.BytesIO()
    photo(300, 260, seed=3).save(buffer, format=fmt)
    data = buffer.getvalue()
    fast = preprocess(decode_image(data, target=224).image, 224)
    assert np.array_equal(fast, exact_resize_pixels(data, 224))
    assert decode_image(data, target=224).image.size == (300, 260)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF", "TIFF"])
def test_heic_avif_and_tiff_decode(fmt: str) -> None:
    source = photo(320, 240, seed=4)
    decoded = decode_image(encoded(source, fmt), target=224)
    assert (decoded.width, decoded.height, decoded.format) == (320, 240, "JPEG")
    assert Image.open(io.BytesIO(decoded.data)).format == "JPEG"  # stored browser-ready
    difference = np.abs(np.asarray(decoded.image, dtype=np.int16) - np.asarray(source, dtype=np.int16))
    assert difference.mean() < 8


def test_folder_of_heic_avif_and_tiff_is_searchable(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "phone"
    folder.mkdir()
    rng = random.Random(7)
    files = {("红色", "圆形"): ("a.heic", "HEIF"), ("蓝色", "正方形"): ("b.avif", "AVIF"),
             ("绿色", "三角形"): ("c.tiff", "TIFF")}
    ids = {}
    for (color, shape), (name, fmt) in files.items():
        data = encoded(draw(color, shape, rng, size=(192, 192)), fmt)
        (folder / name).write_bytes(data)
        ids[color, shape] = folder_image_id(data)
    report = engine.ingest(folder, library="phone")
    assert (report.added, report.bad) == (3, [])
    for (color, shape), image_id in ids.items():
        top = engine.search_text(f"{color}的{shape}", 1, library="phone")[0]
        assert (top.image_id, top.format, top.width, top.height) == (image_id, "JPEG", 192, 192)


def test_truncated_heic_is_a_bad_record(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "phone"
    folder.mkdir()
    data = encoded(photo(320, 240, seed=5), "HEIF")
    (folder / "whole.heic").write_bytes(data)
    (folder / "cut.heic").write_bytes(data[: len(data) // 2])
    report = engine.ingest(folder, library="phone")
    assert report.added == 1
    [bad] = report.bad
    assert (bad.file, bad.line) == ("cut.heic", 1)
    assert "corrupt or truncated" in str(bad.reason)
