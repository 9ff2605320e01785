"""int8 image tower (NNCF): embeddings and rankings stay close to fp32, and quantized IRs are cached safely.

The tiny model's fp32 IR comes from the OpenVINO encoder; int8 is calibrated on freshly drawn shapes and
judged on the fidelity split of test_fidelity.py (the valid split's 90 images, five paraphrases per class).
Text stays on the fp32 OpenVINO tower, as it does in production.
"""

from __future__ import annotations

import base64
import io
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo.shapes import CLASSES, caption_variants, draw
from searchcore.evaluate import recall
from searchcore.models.encoder import Encoder, load_encoder
from searchcore.models.openvino.compiled import ov  # openvino imported after the telemetry opt-out
from searchcore.models.openvino.int8 import OVERFLOW_FIX, cached_int8_model, calibration_sample, has_vnni
from searchcore.models.preprocess import normalise
from tests.support import ROOT, tiny_settings

MIN_COSINE = 0.99
MAX_RECALL_DROP = 2.0  # points
MIN_SAME_TOP10 = 0.80
HINTS = {"f32": ov.Type.f32, "bf16": ov.Type.bf16}


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder of this module's own, so it holds one OpenVINO IR: the tiny model's."""
    return tmp_path_factory.mktemp("int8_models")


@pytest.fixture(scope="module")
def fp32_encoder(model_folder: Path) -> Encoder:
    """The tiny model on OpenVINO in fp32."""
    return load_encoder(tiny_settings(model_folder, model_folder, backend="openvino", precision="fp32"))


@pytest.fixture(scope="module")
def fp32_xml(fp32_encoder: Encoder, model_folder: Path) -> Path:
    """The fp32 image tower IR that the encoder converted and cached."""
    (xml,) = model_folder.rglob("image.xml")
    return xml


@pytest.fixture(scope="module")
def calibration(fp32_encoder: Encoder) -> np.ndarray:
    """100 freshly drawn shapes (seed 11), none of them in the valid split."""
    rng = random.Random(11)
    drawn = (fp32_encoder.preprocess(draw(*CLASSES[i % len(CLASSES)], rng, (96, 96))) for i in range(100))
    return calibration_sample(drawn, 100)


@pytest.fixture(scope="module")
def valid_split(dataset: Path, fp32_encoder: Encoder) -> tuple[list[int], np.ndarray, list[str], list[list[int]]]:
    """Image ids, pixels, texts and each text's right images of the fidelity split."""
    ids, pixels = [], []
    for line in (dataset / "valid_imgs.tsv").read_text().splitlines():
        image_id, b64 = line.split("\t")
        ids.append(int(image_id))
        pixels.append(fp32_encoder.preprocess(Image.open(io.BytesIO(base64.b64decode(b64)))))
    by_caption = {entry["text"]: entry["image_ids"] for entry in map(json.loads, (
        dataset / "valid_texts.jsonl").read_text(encoding="utf-8").splitlines())}
    texts, truth = [], []
    for color, shape in CLASSES:
        for text in caption_variants(color, shape):
            texts.append(text)
            truth.append(by_caption[f"{color}的{shape}"])
    return ids, np.stack(pixels), texts, truth


@pytest.fixture(scope="module")
def int8_model(fp32_xml: Path, calibration: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> ov.Model:
    return cached_int8_model(ov.Core(), fp32_xml, calibration, tmp_path_factory.mktemp("int8_cache"), ["tiny"])


def image_features(model: ov.Model | Path, pixels: np.ndarray, hint: str = "f32") -> np.ndarray:
    """Normalised image features of a model compiled for CPU with the given inference precision."""
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": HINTS[hint]})
    return normalise(compiled({0: pixels})[0])


def top10(texts: np.ndarray, images: np.ndarray, ids: list[int]) -> list[list[int]]:
    """Brute-force top-10 image ids for each text."""
    return [[ids[j] for j in np.argsort(-row, kind="stable")[:10]] for row in texts @ images.T]


@pytest.mark.parametrize("hint", sorted(HINTS))
def test_int8_embeddings_match_fp32_on_held_out_images(hint: str, int8_model: ov.Model, fp32_xml: Path,
                                                      valid_split: tuple) -> None:
    _, pixels, _, _ = valid_split
    cosine = (image_features(int8_model, pixels, hint) * image_features(fp32_xml, pixels)).sum(1)
    assert cosine.min() >= MIN_COSINE, f"worst image cosine {cosine.min():.4f} (mean {cosine.mean():.4f})"


@pytest.mark.parametrize("flags, vnni", [
    ("fpu avx2 avx512f avx512_vnni avx512_bf16", True),  # Zen 5
    ("fpu avx2 avx512_vnni amx_bf16 amx_int8", True),  # Sapphire Rapids
    ("fpu avx avx2 fma", False),  # an AVX2-only EPYC
    ("", False),
])
def test_vnni_is_read_from_the_cpu_flags(flags: str, vnni: bool) -> None:
    assert has_vnni(f"processor\t: 0\nflags\t\t: {flags}\n") is vnni
    assert ("first_layer_only" if has_vnni() else "enable") == OVERFLOW_FIX


def test_the_tower_quantized_for_a_cpu_without_vnni_is_faithful_on_this_one(
        fp32_xml: Path, calibration: np.ndarray, valid_split: tuple, tmp_path: Path) -> None:
    """The fix an AVX2-only CPU needs (every layer's weights in 7 bits), forced: faithful on either CPU kind, and
    cached apart from the default's entry."""
    cache = tmp_path / "int8"
    fixed = cached_int8_model(ov.Core(), fp32_xml, calibration, cache, ["tiny"], overflow_fix="enable")
    _, pixels, _, _ = valid_split
    cosine = (image_features(fixed, pixels) * image_features(fp32_xml, pixels)).sum(1)
    assert cosine.min() >= MIN_COSINE, f"worst image cosine {cosine.min():.4f} (mean {cosine.mean():.4f})"
    cached_int8_model(ov.Core(), fp32_xml, calibration, cache, ["tiny"], overflow_fix="first_layer_only")
    assert len(list(cache.glob("int8-*"))) == 2, "each overflow fix has its own cache entry"


@pytest.mark.parametrize("hint", sorted(HINTS))
def test_int8_keeps_recall_and_rankings(hint: str, int8_model: ov.Model, fp32_xml: Path, fp32_encoder: Encoder,
                                        valid_split: tuple) -> None:
    ids, pixels, texts, truth = valid_split
    queries = fp32_encoder.encode_texts(texts)
    exact = top10(queries, image_features(fp32_xml, pixels), ids)
    ours = top10(queries, image_features(int8_model, pixels, hint), ids)
    reference = dict(enumerate(truth))
    int8_recall, fp32_recall = recall(reference, dict(enumerate(ours))), recall(reference, dict(enumerate(exact)))
    for name in ("r1", "r5", "r10"):
        a, b = getattr(int8_recall, name), getattr(fp32_recall, name)
        assert abs(a - b) <= MAX_RECALL_DROP, f"{name}: int8 {a:.1f} vs fp32 {b:.1f}"
    same = sum(set(a) == set(b) for a, b in zip(ours, exact)) / len(texts)
    assert same >= MIN_SAME_TOP10, f"the same top-10 images for {same:.1%} of texts"


LOAD_CACHED = """
import sys
import numpy as np
from searchcore.models.openvino.compiled import ov  # openvino imported after the telemetry opt-out, as the app does
from searchcore.models.openvino.int8 import cached_int8_model

xml, calibration, cache, out = sys.argv[1:]
pixels = np.load(calibration)
model = cached_int8_model(ov.Core(), xml, pixels, cache, ["tiny"])
assert "nncf" not in sys.modules, "loading a cached int8 IR imported nncf"
compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": ov.Type.f32})
np.save(out, compiled({0: pixels[:8]})[0])
"""


def test_cached_int8_model_loads_without_nncf(fp32_xml: Path, calibration: np.ndarray, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    built = image_features(cached_int8_model(ov.Core(), fp32_xml, calibration, cache, ["tiny"]), calibration[:8])
    np.save(tmp_path / "calibration.npy", calibration)
    args = [fp32_xml, tmp_path / "calibration.npy", cache, tmp_path / "loaded.npy"]
    done = subprocess.run([sys.executable, "-c", LOAD_CACHED, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(normalise(np.load(tmp_path / "loaded.npy")), built, atol=1e-6)


def test_other_calibration_sample_gets_its_own_cache_entry(fp32_xml: Path, calibration: np.ndarray,
                                                           tmp_path: Path) -> None:
    cached_int8_model(ov.Core(), fp32_xml, calibration, tmp_path, ["tiny"])
    cached_int8_model(ov.Core(), fp32_xml, calibration[:-1], tmp_path, ["tiny"])
    cached_int8_model(ov.Core(), fp32_xml, calibration, tmp_path, ["tiny"])
    assert len(list(tmp_path.glob("int8-*/manifest.json"))) == 2


def test_corrupt_cache_entry_is_detected_and_rebuilt(fp32_xml: Path, calibration: np.ndarray, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import nncf

    calls = []
    quantize = nncf.quantize
    monkeypatch.setattr(nncf, "quantize", lambda *args, **kwargs: calls.append(1) or quantize(*args, **kwargs))
    good = image_features(cached_int8_model(ov.Core(), fp32_xml, calibration, tmp_path, ["tiny"]), calibration[:8])
    (entry,) = tmp_path.glob("int8-*")
    weights = bytearray((entry / "image.bin").read_bytes())
    weights[len(weights) // 2] ^= 0xFF
    (entry / "image.bin").write_bytes(weights)
    rebuilt = image_features(cached_int8_model(ov.Core(), fp32_xml, calibration, tmp_path, ["tiny"]), calibration[:8])
    assert len(calls) == 2, "a corrupt entry must be quantized again"
    np.testing.assert_allclose(rebuilt, good, atol=1e-5)
    cached_int8_model(ov.Core(), fp32_xml, calibration, tmp_path, ["tiny"])
    assert len(calls) == 2, "the rebuilt entry must load from the cache"


def test_calibration_sample_is_deterministic() -> None:
    batches = [np.full((5, 3, 4, 4), i, dtype=np.float32) for i in range(20)]  # 100 images, value = batch index
    head = calibration_sample(batches, 12)
    assert head.shape == (12, 3, 4, 4) and head[:, 0, 0, 0].tolist() == [0] * 5 + [1] * 5 + [2] * 2
    first, again = calibration_sample(iter(batches), 12, seed=3), calibration_sample(iter(batches), 12, seed=3)
    np.testing.assert_array_equal(first, again)
    assert first[:, 0, 0, 0].max() > 2, "a seeded sample draws from the whole stream"
    assert not np.array_equal(first, calibration_sample(iter(batches), 12, seed=4))


def test_importing_the_int8_module_does_not_import_nncf_or_torch() -> None:
    done = subprocess.run([sys.executable, "-c", "import sys, searchcore.models.openvino.int8; "
                           "print(sorted(m for m in ('nncf', 'torch') if m in sys.modules))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
