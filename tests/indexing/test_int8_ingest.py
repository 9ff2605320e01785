"""SEARCHCORE_PRECISION=int8 end to end: ingest calibrates the image tower on the head of its own stream."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from searchcore.engine import Engine
from searchcore.errors import ConfigError
from searchcore.evaluate import Prediction, predict, recall
from searchcore.models.encoder import load_encoder, resolve_precision
from searchcore.models.openvino import int8 as openvino_int8
from searchcore.models.openvino import towers as openvino_backend
from searchcore.models.openvino.compiled import native_bf16, ov
from tests.support import tiny_settings

MAX_RECALL_DROP = 2.0  # points
MIN_SAME_TOP10 = 0.80
# int8's float towers (its text tower, and the image tower it falls back to) run in bf16 where the CPU computes
# it natively (Zen 5, AMX), else in f32 (an AVX2-only CPU)
FLOAT_PRECISION = "bf16" if native_bf16(ov.Core()) else "fp32"


def _predict(tmp: Path, cache: Path, dataset: Path, precision: str) -> tuple[list[Prediction], dict]:
    settings = tiny_settings(tmp / precision, cache, backend="openvino", precision=precision)
    engine = Engine(settings, encoder=load_encoder(settings))
    try:
        found = predict(lambda: engine.encoder, engine.stores, dataset, "valid", library="default",
                        fill=lambda: engine.ingest(dataset, split="valid"))
        return found, engine.encoder.runtime()
    finally:
        engine.close()


def _recalls(predictions: list[Prediction], dataset: Path) -> list[float]:
    import json

    texts = [json.loads(line) for line in (dataset / "valid_texts.jsonl").read_text(encoding="utf-8").splitlines()]
    result = recall({t["text_id"]: t["image_ids"] for t in texts}, {p.text_id: p.image_ids for p in predictions})
    return [result.r1, result.r5, result.r10]


def test_int8_ingest_calibrates_and_keeps_rankings(tmp_path: Path, dataset: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "models"
    exact, _ = _predict(tmp_path, cache, dataset, "fp32")
    int8, runtime = _predict(tmp_path, cache, dataset, "int8")
    assert runtime["precision"] == {"image": "int8", "text": FLOAT_PRECISION}
    for ours, theirs in zip(_recalls(int8, dataset), _recalls(exact, dataset)):
        assert abs(ours - theirs) <= MAX_RECALL_DROP
    same = sum(set(a.image_ids) == set(b.image_ids) for a, b in zip(int8, exact)) / len(exact)
    assert same >= MIN_SAME_TOP10, f"the same top-10 images for {same:.1%} of texts"

    def no_quantizing(*args: object, **kwargs: object) -> None:
        raise AssertionError("a recorded calibration must be read from the cache, not quantized again")

    monkeypatch.setattr(openvino_int8, "quantize_image_model", no_quantizing)
    again = load_encoder(tiny_settings(tmp_path / "again", cache, backend="openvino", precision="int8"))
    assert again.runtime()["precision"]["image"] == "int8"  # a restart starts in int8, with no ingest
    images = np.random.default_rng(0).standard_normal((4, 3, again.resolution, again.resolution)).astype(np.float32)
    reference = load_encoder(tiny_settings(tmp_path / "ref", cache, backend="openvino", precision="fp32"))
    cosine = (again.encode_pixels(images) * reference.encode_pixels(images)).sum(axis=1)
    assert cosine.min() >= 0.99


def test_int8_that_fails_its_probe_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    real = openvino_int8.cached_int8_model

    def broken(*args: object, **kwargs: object) -> object:  # a quantization gone wrong: features off by far
        model = real(*args, **kwargs)
        ops = openvino_backend.ov.opset13
        features = model.output(0).get_node().input_value(0)
        dim = features.get_partial_shape()[1].get_length()
        offset = ops.constant(np.random.default_rng(3).standard_normal((1, dim)).astype(np.float32) * 1e3)
        return openvino_backend.ov.Model([ops.add(features, offset)], model.get_parameters(), "broken")

    monkeypatch.setattr(openvino_int8, "cached_int8_model", broken)
    encoder = load_encoder(tiny_settings(tmp_path, tmp_path / "models", backend="openvino", precision="int8"))
    pixels = np.random.default_rng(1).standard_normal((64, 3, encoder.resolution, encoder.resolution))
    with caplog.at_level(logging.WARNING, logger="searchcore.models.openvino.towers"):
        vectors = [v for _, v in encoder.encode_pixel_batches((i, pixels[i:i + 8]) for i in range(0, 64, 8))]
    assert encoder.runtime()["precision"]["image"] == FLOAT_PRECISION
    assert any("int8 image tower failed its check" in r.getMessage() for r in caplog.records)
    reference = load_encoder(tiny_settings(tmp_path / "ref", tmp_path / "models", backend="openvino",
                                           precision="fp32")).encode_pixels(pixels.astype(np.float32))
    assert ((np.concatenate(vectors) * reference).sum(axis=1)).min() >= 0.999


def test_the_stream_that_calibrates_is_encoded_in_int8(tmp_path: Path) -> None:
    encoder = load_encoder(tiny_settings(tmp_path, tmp_path / "models", backend="openvino", precision="int8"))
    pixels = np.random.default_rng(2).standard_normal((64, 3, encoder.resolution, encoder.resolution))
    pixels = pixels.astype(np.float32)
    streamed = np.concatenate([v for _, v in encoder.encode_pixel_batches((i, pixels[i:i + 8])
                                                                          for i in range(0, 64, 8))])
    assert encoder.runtime()["precision"]["image"] == "int8"
    # The same pixels through the int8 tower now serving: the first ingest's vectors are int8 ones too.
    np.testing.assert_allclose(streamed, encoder.encode_pixels(pixels), atol=1e-5)


def test_too_few_images_keep_the_float_tower(tmp_path: Path) -> None:
    encoder = load_encoder(tiny_settings(tmp_path, tmp_path / "models", backend="openvino", precision="int8"))
    pixels = np.zeros((8, 3, encoder.resolution, encoder.resolution), dtype=np.float32)
    list(encoder.encode_pixel_batches([(0, pixels)]))
    assert encoder.runtime()["precision"]["image"] == FLOAT_PRECISION


def test_int8_needs_openvino_on_the_cpu(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="int8 needs the OpenVINO backend"):
        load_encoder(tiny_settings(tmp_path, tmp_path / "models", precision="int8", backend="torch"))
    with pytest.raises(ConfigError, match="int8 runs on the CPU"):
        resolve_precision("int8", "cuda")
