"""JPEG decoding on the encoder's device (the CUDA path) keeps the CPU path's results.

The device is a parameter: these tests run the exact code the CUDA path runs, with torchvision's decode_jpeg
and torch's resize on the CPU. Pictures it takes must give the CPU path's pixels (within Pillow's 8-bit
rounding) and embeddings (cosine at least 0.999); the rest (CMYK, EXIF-rotated, PNG, truncated, broken)
fall back to the CPU path per picture and keep its result exactly, bad records included; an ingest stores the
same images under the same ids, in the same order.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from searchcore.engine import Engine
from searchcore.errors import ConfigError, ImageDecodeError
from searchcore.indexing.pipeline import prepared_batches
from searchcore.models.encoder import Encoder, load_encoder
from searchcore.models.gpu_decode import DeviceDecoder
from searchcore.models.preprocess import STD, preprocess
from searchcore.sources.imaging import ORIENTATION, decode_image
from tests.support import tiny_settings

MIN_COSINE = 0.999
ON_DEVICE = {"baseline", "progressive", "greyscale", "odd_size", "tiny", "large", "broken_tables"}


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth gradients with a little noise: compresses like a photograph."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height) + 64], axis=-1)
    noise = rng.integers(-12, 12, (height, width, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def encoded(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def pictures() -> dict[str, bytes]:
    """One picture of each kind the device path must handle, by name."""
    base = photo(500, 375)
    rotated = Image.Exif()
    rotated[ORIENTATION] = 6
    baseline = encoded(base, quality=90)
    return {
        "baseline": baseline,
        "progressive": encoded(base, quality=90, progressive=True),
        "cmyk": encoded(base.convert("CMYK"), quality=90),
        "exif_rotated": encoded(base, quality=90, exif=rotated),
        "greyscale": encoded(base.convert("L"), quality=90),
        "png": encoded(base, "PNG"),
        "truncated": baseline[: len(baseline) // 2],
        # complete, but its quantization tables are hidden in an APP5 segment: a decoder must refuse it
        "broken_tables": baseline.replace(b"\xff\xdb", b"\xff\xe5"),
        "large": encoded(photo(4000, 3000, seed=1), quality=80),
        "odd_size": encoded(photo(101, 333, seed=2), quality=90),
        "tiny": encoded(photo(7, 5, seed=3), quality=90),
    }


@pytest.fixture(scope="module")
def device_encoder(torch_encoder: Encoder) -> Encoder:
    """The tiny model's PyTorch encoder with a device decoder on the CPU."""
    return Encoder(torch_encoder.runtime_impl, torch_encoder.spec, device="cpu", precision="fp32", backend="torch",
                   device_decoder=DeviceDecoder(torch_encoder.resolution, "cpu"))


def pipeline(pictures: dict[str, bytes], encoder: Encoder, device_decode: bool
             ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each picture's model input as the ingest pipeline gives it (numpy), and each bad one's reason."""
    bad: dict[str, str] = {}
    rows: dict[str, np.ndarray] = {}
    for batch, pixels in prepared_batches(list(pictures), pictures.__getitem__, encoder, batch_size=4, workers=2,
                                          on_bad=lambda name, reason: bad.__setitem__(name, reason),
                                          device_decode=device_decode):
        values = pixels.numpy() if not isinstance(pixels, np.ndarray) else pixels
        rows.update((p.item, row) for p, row in zip(batch, values))
    return rows, bad


def test_device_pixels_match_pillows_preprocess_at_the_official_models_resolution(pictures: dict[str, bytes]
                                                                                   ) -> None:
    decoder = DeviceDecoder(224, "cpu")
    levels = {}
    for name in sorted(ON_DEVICE - {"broken_tables"}):
        cpu = preprocess(decode_image(pictures[name], target=224).image, 224)
        device = decoder.model_inputs([pictures[name]])[0].numpy()
        levels[name] = float(np.max(np.abs(cpu - device) * STD * 255))  # in 8-bit levels of the resized picture
    print("largest difference from the CPU path, in 8-bit levels:", levels)
    # Decoded exactly on both paths, the two resizes differ by Pillow's fixed-point rounding (one level).
    assert all(levels[name] <= 1.01 for name in levels if name != "large"), levels
    # The CPU path decodes a 12 MP JPEG at 1/8 scale (libjpeg's draft) and box-reduces it: a few levels.
    assert levels["large"] <= 6, levels


def test_embeddings_through_the_device_path_keep_cosine_0999_per_picture(
        pictures: dict[str, bytes], torch_encoder: Encoder, device_encoder: Encoder) -> None:
    cpu, cpu_bad = pipeline(pictures, torch_encoder, device_decode=False)
    device, device_bad = pipeline(pictures, device_encoder, device_decode=True)
    assert list(device) == list(cpu) and device_bad == cpu_bad
    names = list(cpu)
    cosines = np.sum(torch_encoder.encode_pixels(np.stack([cpu[n] for n in names]))
                     * torch_encoder.encode_pixels(np.stack([device[n] for n in names])), axis=1)
    report = dict(zip(names, np.round(cosines, 6).tolist()))
    print("cosine, device path against the CPU path:", report)
    assert min(cosines) >= MIN_COSINE, report


def test_pictures_the_device_cannot_take_fall_back_to_the_cpu_path_and_keep_its_result(
        pictures: dict[str, bytes], torch_encoder: Encoder, device_encoder: Encoder) -> None:
    deferred = set()
    for name, data in pictures.items():
        try:
            if decode_image(data, target=torch_encoder.resolution, defer=True).deferred:
                deferred.add(name)
        except ImageDecodeError:
            pass
    assert deferred == ON_DEVICE  # CMYK, rotated, PNG and truncated never reach the device decoder
    decoder = device_encoder.device_decoder
    assert decoder is not None
    refused = decoder.refused
    cpu, cpu_bad = pipeline(pictures, torch_encoder, device_decode=False)
    device, device_bad = pipeline(pictures, device_encoder, device_decode=True)
    assert decoder.refused - refused == 1  # broken_tables: the rest of its batch still decoded on the device
    for name in ("cmyk", "exif_rotated", "png"):
        assert np.array_equal(device[name], cpu[name]), name
    assert set(device_bad) == {"truncated", "broken_tables"}
    assert device_bad == cpu_bad  # the CPU path decided both: the same bad record, the same reason
    assert "corrupt" in str(device_bad["broken_tables"])


def tsv_dataset(root: Path, pictures: dict[str, bytes]) -> list[int]:
    root.mkdir()
    ids = list(range(100, 100 + len(pictures)))
    lines = [f"{i}\t{base64.b64encode(data).decode('ascii')}\n" for i, data in zip(ids, pictures.values())]
    (root / "test_imgs.tsv").write_text("".join(lines), encoding="utf-8")
    (root / "test_texts.jsonl").write_text("", encoding="utf-8")
    return ids


def test_an_ingest_with_device_decoding_stores_the_same_images_and_close_vectors(
        pictures: dict[str, bytes], tmp_path: Path, model_cache: Path) -> None:
    ids = tsv_dataset(tmp_path / "data", pictures)
    found = {}
    for mode in ("off", "on"):
        settings = tiny_settings(tmp_path / mode, model_cache, backend="torch", precision="fp32", gpu_decode=mode,
                                 batch_size=4)
        with Engine(settings) as engine:
            assert (engine.encoder.device_decoder is not None) == (mode == "on")
            report = engine.ingest(tmp_path / "data", split="test")
            stored = list(engine.images.ids(settings.library))
            images = engine.images.get_many(settings.library, stored)
            vectors = engine.vectors.vectors(settings.library, stored)
            found[mode] = (report.added, sorted((b.line, str(b.reason)) for b in report.bad), stored, images, vectors)
    (added, bad, stored, images, vectors), (added_on, bad_on, stored_on, images_on, vectors_on) = found.values()
    assert (added_on, bad_on, stored_on) == (added, bad, stored)
    assert added == len(ids) - 2 and len(bad) == 2
    assert images_on == images  # the bytes stored, their format, size and digest
    cosines = {i: float(vectors[i] @ vectors_on[i]) for i in stored}
    assert min(cosines.values()) >= MIN_COSINE, cosines


def test_gpu_decode_on_needs_pytorch_and_auto_stays_off_on_a_cpu(tmp_path: Path, model_cache: Path,
                                                                  torch_encoder: Encoder) -> None:
    assert torch_encoder.device_decoder is None  # auto, on a CPU
    with pytest.raises(ConfigError) as raised:
        load_encoder(tiny_settings(tmp_path, model_cache, backend="openvino", gpu_decode="on"))
    assert raised.value.kind == "gpu_decode_needs_torch"
