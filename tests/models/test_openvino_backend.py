"""Tests for the OpenVINO backend of both Chinese-CLIP towers (accuracy vs torch, streaming, cache)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openvino
import pytest
import torch
from cn_clip.clip import tokenize
from cn_clip.clip.model import CLIP

from demo.train_tiny_model import MODEL_CONFIG
from searchcore.models.openvino.towers import OpenVINOTowers

ROOT = Path(__file__).resolve().parents[2]
TINY_CKPT = ROOT / "demo" / "tiny_clip.pt"
TINY_CONFIG: dict[str, Any] = MODEL_CONFIG
TEXTS = [
    "一只红色的圆形",
    "蓝色的正方形在白色背景上",
    "猫",
    "一只小狗在草地上奔跑",
    "北京的天安门广场",
    "绿色三角形",
    "夕阳下的海滩和椰子树",
    "两个黄色的星星",
]
MIN_COS = {"fp32": 0.9999, "bf16": 0.999}


def _load_tiny() -> tuple[CLIP, int]:
    """demo/tiny_clip.pt if it exists, else a randomly initialised tiny CLIP; returns (model, resolution)."""
    if TINY_CKPT.exists():
        ckpt = torch.load(TINY_CKPT, map_location="cpu")
        config = ckpt["model_config"]
        model = CLIP(**config)
        state = {k.removeprefix("module."): v.float() for k, v in ckpt["state_dict"].items()}
        model.load_state_dict(state)
    else:
        torch.manual_seed(0)
        config = TINY_CONFIG
        model = CLIP(**config)
    return model.float().eval(), int(config["image_resolution"])


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity."""
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _pixels(n: int, resolution: int, seed: int) -> np.ndarray:
    """Random 'preprocessed' pixels (roughly unit-normal like normalised images)."""
    return np.random.default_rng(seed).standard_normal((n, 3, resolution, resolution), dtype=np.float32)


def _no_hang(fn: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Run fn in a thread; fail instead of hanging, re-raise its exception."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "encode_pixel_batches hung"
    if "error" in box:
        raise box["error"]
    return box.get("value")


@pytest.fixture(scope="module")
def tiny() -> tuple[CLIP, int]:
    return _load_tiny()


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ov-cache")


@pytest.fixture(scope="module", params=["fp32", "bf16"])
def towers(request: pytest.FixtureRequest, tiny: tuple[CLIP, int], shared_cache: Path) -> OpenVINOTowers:
    model, resolution = tiny
    return OpenVINOTowers(
        model, resolution=resolution, precision=request.param, cache_dir=shared_cache, cache_key="tiny"
    )


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_image_tower_matches_torch(towers: OpenVINOTowers, tiny: tuple[CLIP, int], batch: int) -> None:
    model, resolution = tiny
    pixels = _pixels(batch, resolution, seed=batch)
    with torch.no_grad():
        ref = model.encode_image(torch.from_numpy(pixels)).numpy()
    out = towers.encode_pixels(pixels)
    assert out.shape == (batch, towers.dim) and out.dtype == np.float32
    assert _cosine(out, ref).min() >= MIN_COS[towers.precision]
    assert np.allclose(np.linalg.norm(out, axis=1), np.linalg.norm(ref, axis=1), rtol=0.02)  # not normalised


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_text_tower_matches_torch(towers: OpenVINOTowers, tiny: tuple[CLIP, int], batch: int) -> None:
    model, _ = tiny
    tokens = tokenize(TEXTS[:batch], context_length=52)
    with torch.no_grad():
        ref = model.encode_text(tokens).numpy()
    out = towers.encode_tokens(tokens.numpy())
    assert out.shape == (batch, towers.dim) and out.dtype == np.float32
    assert _cosine(out, ref).min() >= MIN_COS[towers.precision]


def test_precision_hint_applied(towers: OpenVINOTowers) -> None:
    core = openvino.Core()
    bf16 = towers.precision == "bf16" and "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    expected = openvino.Type.bf16 if bf16 else openvino.Type.f32
    for compiled in (towers._image, towers._text):
        assert compiled.get_property("INFERENCE_PRECISION_HINT") == expected
    assert str(towers._image.get_property("PERFORMANCE_HINT")).endswith("THROUGHPUT")
    assert str(towers._text.get_property("PERFORMANCE_HINT")).endswith("LATENCY")


def test_rejects_bad_shapes(towers: OpenVINOTowers) -> None:
    r = towers.resolution
    with pytest.raises(ValueError):
        towers.encode_pixels(np.zeros((0, 3, r, r), np.float32))
    with pytest.raises(ValueError):
        towers.encode_pixels(np.zeros((1, 3, r + 1, r), np.float32))
    with pytest.raises(ValueError):
        towers.encode_tokens(np.zeros((2, 77), np.int64))


@pytest.fixture(scope="module")
def rn50() -> CLIP:
    from cn_clip.clip.utils import create_model

    torch.manual_seed(0)
    return create_model("RN50@RBT3-chinese").float().eval()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_rn50_image_tower_matches_torch(rn50: CLIP, shared_cache: Path, precision: str) -> None:
    towers = OpenVINOTowers(rn50, resolution=224, precision=precision, cache_dir=shared_cache, cache_key="rn50")
    pixels = _pixels(3, 224, seed=7)  # 3 != the batch of 2 used for tracing
    with torch.no_grad():
        ref = rn50.encode_image(torch.from_numpy(pixels)).numpy()
    out = towers.encode_pixels(pixels[:2])  # split over the infer requests: batch-1 requests
    assert out.shape == (2, towers.dim)
    assert _cosine(out, ref[:2]).min() >= MIN_COS[precision]
    [(_, whole)] = list(towers.encode_pixel_batches([(None, pixels)]))  # one batch-3 request
    assert _cosine(whole, ref).min() >= MIN_COS[precision]


def test_pixel_batches_in_order_and_lazy(towers: OpenVINOTowers) -> None:
    sizes = [3, 1, 8, 2, 5, 8, 1, 4, 7, 2]
    batches = [
        ({"id": i, "names": [f"img{i}-{j}" for j in range(n)]}, _pixels(n, towers.resolution, 100 + i))
        for i, n in enumerate(sizes)
    ]
    pulled = 0
    pulled_at_first_result: list[int] = []

    def feed() -> Iterator[tuple[dict[str, Any], np.ndarray]]:
        nonlocal pulled
        for item in batches:
            pulled += 1
            yield item

    def consume() -> list[tuple[dict[str, Any], np.ndarray]]:
        results = []
        for item in towers.encode_pixel_batches(feed()):
            pulled_at_first_result.append(pulled)
            results.append(item)
        return results

    results = _no_hang(consume)
    assert [payload for payload, _ in results] == [payload for payload, _ in batches]  # order + payloads intact
    assert all(p is q for (p, _), (q, _) in zip(results, batches))
    for (_, feats), (_, pixels) in zip(results, batches):
        assert np.allclose(feats, towers.encode_pixels(pixels), rtol=1e-4, atol=1e-5)
    assert pulled_at_first_result[0] <= 2 * towers.jobs + 1  # consumed lazily, bounded in-flight work


@pytest.mark.parametrize("fail_after", [0, 3])
def test_pixel_batches_propagates_input_error(towers: OpenVINOTowers, fail_after: int) -> None:
    def feed() -> Iterator[tuple[int, np.ndarray]]:
        for i in range(fail_after):
            yield i, _pixels(4, towers.resolution, i)
        raise RuntimeError("decode failed")

    seen: list[int] = []

    def consume() -> None:
        for payload, _ in towers.encode_pixel_batches(feed()):
            seen.append(payload)

    with pytest.raises(RuntimeError, match="decode failed"):
        _no_hang(consume)
    assert seen == list(range(len(seen)))  # whatever was yielded before the error came in order
    # the instance is still usable afterwards
    assert towers.encode_pixels(_pixels(2, towers.resolution, 0)).shape == (2, towers.dim)


def test_cache_reuse_and_corruption(tiny: tuple[CLIP, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, resolution = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = 0
    real_convert = openvino.convert_model

    def spy(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real_convert(*args, **kwargs)

    monkeypatch.setattr(openvino, "convert_model", spy)
    pixels = _pixels(3, resolution, seed=1)
    tokens = tokenize(TEXTS[:3]).numpy()
    with torch.no_grad():
        ref_img = model.encode_image(torch.from_numpy(pixels)).numpy()
        ref_txt = model.encode_text(torch.from_numpy(tokens)).numpy()

    def build() -> OpenVINOTowers:
        return OpenVINOTowers(model, resolution=resolution, precision="fp32", cache_dir=tmp_path, cache_key="k1")

    def check(towers: OpenVINOTowers) -> None:
        assert _cosine(towers.encode_pixels(pixels), ref_img).min() >= 0.9999
        assert _cosine(towers.encode_tokens(tokens), ref_txt).min() >= 0.9999

    first = build()
    assert calls == 2  # image + text tower
    entry = first.entry_dir
    assert entry.parent == tmp_path and entry.name.startswith("k1")
    assert {p.name for p in entry.iterdir()} == {"image.xml", "image.bin", "text.xml", "text.bin", "manifest.json"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left behind
    check(first)

    check(build())
    assert calls == 2  # cache hit: no conversion

    def shuffle_weights() -> None:  # same size, still a valid IR, wrong values: only the checksum can tell
        consts = []
        for layer in ET.parse(entry / "image.xml").getroot().iter("layer"):
            node = layer.find("data")
            if layer.get("type") == "Const" and node is not None and node.get("element_type") == "f32":
                consts.append(node.attrib)
        biggest = max(consts, key=lambda attrs: int(attrs["size"]))
        start, stop = int(biggest["offset"]), int(biggest["offset"]) + int(biggest["size"])
        data = bytearray((entry / "image.bin").read_bytes())
        values = np.frombuffer(bytes(data[start:stop]), np.float32).copy()
        np.random.default_rng(0).shuffle(values)
        data[start:stop] = values.tobytes()
        (entry / "image.bin").write_bytes(bytes(data))

    corruptions: list[Callable[[], object]] = [
        shuffle_weights,
        lambda: (entry / "image.bin").write_bytes((entry / "image.bin").read_bytes()[:1000]),  # truncated
        lambda: (entry / "text.xml").write_text("<net>garbage", encoding="utf-8"),
        lambda: (entry / "text.bin").unlink(),
        lambda: (entry / "manifest.json").write_text("{", encoding="utf-8"),
    ]
    for corrupt in corruptions:
        corrupt()
        calls = 0
        check(build())
        assert calls == 2  # detected and rebuilt

    # the torch model was not modified by conversion (dtype, values, mode)
    after = model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    assert not model.training


def test_unwritable_cache_dir_still_works(tiny: tuple[CLIP, int], tmp_path: Path) -> None:
    model, resolution = tiny
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    towers = OpenVINOTowers(model, resolution=resolution, precision="fp32", cache_dir=not_a_dir, cache_key="k")
    pixels = _pixels(2, resolution, seed=3)
    with torch.no_grad():
        ref = model.encode_image(torch.from_numpy(pixels)).numpy()
    assert _cosine(towers.encode_pixels(pixels), ref).min() >= 0.9999


def test_telemetry_disabled_without_network(tmp_path: Path) -> None:
    """A fresh HOME gets the opt-out consent file and OpenVINO's telemetry singleton never consents."""
    code = (
        "import urllib.request\n"
        "calls = []\n"
        "urllib.request.urlopen = lambda *a, **k: calls.append(a)\n"
        "import searchcore.models.openvino.compiled as ob\n"
        "import openvino_telemetry as tm\n"
        "assert ob.TELEMETRY_OPT_OUT == 'consent-file', ob.TELEMETRY_OPT_OUT\n"
        "t = tm.Telemetry()\n"
        "t.send_event('test', 'event', 'x')\n"
        "assert t.consent is False and not calls\n"
    )
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    env.pop("CI", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "intel" / "openvino_telemetry").read_text().strip() == "0"
