"""The OpenVINO precision guard: a reduced-precision tower that drifts from f32 is served in f32.

The root cause it guards against (issue 10): OpenVINO's CPU blob cache leaves the inference precision out of
its key, so a bf16 compile used to import the blob of an f32 compile of the same IR (NaN on AMX). The cache is
now split by precision; these tests prove that, and force the guard's failure branches with a poisoned
reduced-precision compile, which no CPU here produces on its own.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import openvino.properties as props
import pytest

from searchcore.engine import Engine
from searchcore.evaluate import predict
from searchcore.models.encoder import Encoder, load_encoder
from searchcore.models.openvino import towers
from searchcore.models.openvino.towers import OpenVINOTowers, judge_probe
from tests.support import CliRun, tiny_settings

HAS_BF16 = "BF16" in ov.Core().get_property("CPU", props.device.capabilities)
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="this CPU compiles no bf16 (AVX2 only)")


def _poisoned(model: ov.Model, kind: str) -> ov.Model:
    """The same tower with its features made NaN ('nan') or pushed far off by a constant ('drift')."""
    clone = model.clone()
    features = clone.output(0).get_node().input_value(0)  # the value the Result node returns
    dim = features.get_partial_shape()[1].get_length()
    if kind == "nan":
        broken = ops.multiply(features, ops.constant(np.full((1, dim), np.nan, dtype=np.float32)))
    else:
        offset = np.random.default_rng(7).standard_normal((1, dim)).astype(np.float32) * 1e3
        broken = ops.add(features, ops.constant(offset))
    return ov.Model([broken], clone.get_parameters(), f"{kind}-poisoned")


def _tower_of(model: ov.Model) -> str:
    return "image" if model.input(0).get_partial_shape().rank.get_length() == 4 else "text"


@pytest.fixture()
def poison(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Make every reduced-precision compile of the named towers broken: {'image': 'nan', 'text': 'drift'}."""
    plan: dict[str, str] = {}
    original = OpenVINOTowers._compile

    def compile_(self: OpenVINOTowers, model: ov.Model, mode: Any, precision: ov.Type) -> ov.CompiledModel:
        tower = _tower_of(model)
        if precision != ov.Type.f32 and tower in plan:
            model = _poisoned(model, plan[tower])
        return original(self, model, mode, precision)

    monkeypatch.setattr(OpenVINOTowers, "_compile", compile_)
    return plan


@pytest.fixture()
def probes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records the towers whose probe actually ran."""
    ran: list[str] = []
    original = OpenVINOTowers._probe

    def probe(self: OpenVINOTowers, tower: str, *args: Any) -> dict[str, Any]:
        ran.append(tower)
        return original(self, tower, *args)

    monkeypatch.setattr(OpenVINOTowers, "_probe", probe)
    return ran


def _encoder(tmp: Path, cache: Path, precision: str) -> Encoder:
    return load_encoder(tiny_settings(tmp, cache, backend="openvino", precision=precision))


def _manifest_probes(cache: Path) -> dict[str, Any]:
    (entry,) = [p for p in (cache / "openvino").glob("*-bf16-ir*") if p.is_dir()]
    return json.loads((entry / "manifest.json").read_text(encoding="utf-8"))["probes"]


@needs_bf16
def test_blob_cache_keeps_precisions_apart(tmp_path: Path) -> None:
    """fp32 first, then bf16 on the same cache: the bf16 towers are compiled, not imported from f32 blobs."""
    fp32 = _encoder(tmp_path, tmp_path / "models", "fp32")
    bf16 = _encoder(tmp_path, tmp_path / "models", "bf16")
    for compiled in (bf16.runtime_impl._image, bf16.runtime_impl._text):
        assert not compiled.get_property(props.loaded_from_cache)
        assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16
    again = _encoder(tmp_path, tmp_path / "models", "bf16")  # its own blobs are reused
    assert again.runtime_impl._image.get_property(props.loaded_from_cache)
    texts = ["红色的圆形", "蓝色的正方形"]
    cosine = (fp32.encode_texts(texts) * again.encode_texts(texts)).sum(axis=1)
    assert np.isfinite(cosine).all() and cosine.min() >= 0.999


@needs_bf16
def test_failed_probe_serves_f32_with_the_right_results(
    tmp_path: Path, dataset: Path, poison: dict[str, str], probes: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "models"
    poison.update(image="nan", text="drift")
    with caplog.at_level(logging.WARNING, logger="searchcore.models.openvino.towers"):
        guarded = _encoder(tmp_path, cache, "bf16")
        assert probes == []  # no tower is compiled before its first use
        assert np.isfinite(guarded.encode_texts(["红色的圆形"])).all()
        assert probes == ["text"]  # a text query checks the text tower alone
        pixels = np.zeros((2, 3, guarded.resolution, guarded.resolution), dtype=np.float32)
        assert np.isfinite(guarded.encode_pixels(pixels)).all()  # the image tower's first use checks it
    assert probes == ["text", "image"]
    assert guarded.runtime()["precision"] == {"image": "fp32", "text": "fp32"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("image tower" in w and "not finite" in w for w in warnings), warnings
    assert any("text tower" in w and "cosine" in w for w in warnings), warnings
    recorded = _manifest_probes(cache)
    assert recorded["image"]["bf16"]["verdict"] == "fail" and recorded["text"]["bf16"]["verdict"] == "fail"

    # The poison really breaks a tower: served unguarded, the image features would be NaN.
    broken = OpenVINOTowers._compile(guarded.runtime_impl, _poisoned(guarded.runtime_impl._core.read_model(
        next((cache / "openvino").glob("*-bf16-ir*")) / "image.xml"), "nan"), "THROUGHPUT", ov.Type.bf16)
    request = broken.create_infer_request()
    request.infer({0: np.zeros((1, 3, guarded.resolution, guarded.resolution), dtype=np.float32)})
    assert not np.isfinite(request.get_output_tensor(0).data).all()

    reference = _encoder(tmp_path, cache, "fp32")
    found = {}
    for name, encoder in (("guarded", guarded), ("fp32", reference)):
        engine = Engine(tiny_settings(tmp_path / name, cache), encoder=encoder)
        try:
            found[name] = predict(lambda e=encoder: e, engine.stores, dataset, "valid", library="default",
                                  fill=lambda e=engine: e.ingest(dataset, split="valid"))
        finally:
            engine.close()
    assert [p.image_ids for p in found["guarded"]] == [p.image_ids for p in found["fp32"]]
    assert all(np.isfinite(p.scores).all() for p in found["guarded"])


@needs_bf16
def test_recorded_verdicts_are_trusted(tmp_path: Path, poison: dict[str, str], probes: list[str],
                                       caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "models"
    poison.update(text="nan")
    first = _encoder(tmp_path, cache, "bf16")
    assert first.runtime()["precision"] == {"image": "bf16", "text": "fp32"}
    assert sorted(probes) == ["image", "text"]
    probes.clear()
    poison.clear()  # the next start would pass, but the recorded verdict stands: no probe, text stays f32
    with caplog.at_level(logging.WARNING, logger="searchcore.models.openvino.towers"):
        second = _encoder(tmp_path, cache, "bf16")
        assert second.runtime()["precision"] == {"image": "bf16", "text": "fp32"}
    assert probes == []
    assert any("text tower" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert _manifest_probes(cache)["image"]["bf16"]["verdict"] == "pass"


def test_text_query_compiles_only_the_text_tower(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 21: a text query compiles the text tower alone; the image tower compiles on its first use and
    gives the same features as one compiled up front."""
    compiled: list[str] = []
    original = OpenVINOTowers._compile

    def compile_(self: OpenVINOTowers, model: ov.Model, mode: Any, precision: ov.Type) -> ov.CompiledModel:
        compiled.append(_tower_of(model))
        return original(self, model, mode, precision)

    monkeypatch.setattr(OpenVINOTowers, "_compile", compile_)
    cache = tmp_path / "models"
    lazy = _encoder(tmp_path, cache, "fp32")
    assert compiled == []
    texts = ["红色的圆形", "蓝色的正方形"]
    text_vectors = lazy.encode_texts(texts)
    assert compiled == ["text"] and sorted(lazy.runtime_impl._compiled) == ["text"]  # type: ignore[attr-defined]
    pixels = np.random.default_rng(3).standard_normal((3, 3, lazy.resolution, lazy.resolution), dtype=np.float32)
    image_vectors = lazy.encode_pixels(pixels)
    assert compiled == ["text", "image"]
    eager = _encoder(tmp_path, cache, "fp32")
    assert eager.runtime()["precision"] == {"image": "fp32", "text": "fp32"}  # reading it compiles both
    assert compiled == ["text", "image", "image", "text"]
    np.testing.assert_allclose(image_vectors, eager.encode_pixels(pixels), atol=1e-6)
    np.testing.assert_allclose(text_vectors, eager.encode_texts(texts), atol=1e-6)
    [(_, streamed)] = list(eager.encode_pixel_batches([(None, pixels)]))
    np.testing.assert_allclose(streamed, image_vectors, atol=1e-5)


def test_fp32_runs_no_probe(tmp_path: Path, probes: list[str]) -> None:
    encoder = _encoder(tmp_path, tmp_path / "models", "fp32")
    assert probes == []
    assert encoder.runtime() == {"backend": "openvino", "device": "cpu",
                                 "precision": {"image": "fp32", "text": "fp32"}}


def test_judge_probe_branches() -> None:
    reference = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    assert judge_probe(reference * 1.0001, reference, 0.999)["verdict"] == "pass"
    with_nan = reference.copy()
    with_nan[1, 3] = np.nan
    assert judge_probe(with_nan, reference, 0.999)["reason"].startswith("features are not finite")
    drifted = reference.copy()
    drifted[2] = -drifted[2]  # one row off is enough
    verdict = judge_probe(drifted, reference, 0.999)
    assert verdict["verdict"] == "fail" and verdict["min_cosine"] == pytest.approx(-1.0, abs=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_info_json_reports_each_towers_precision(tmp_path: Path, model_cache: Path, cli_in_process: CliRun,
                                                 precision: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(towers, "native_bf16", lambda core: True)  # as on Zen 5 and on AMX
    settings = tiny_settings(tmp_path, model_cache, backend="openvino", precision=precision)
    code, out, _ = cli_in_process(settings, "info", "--json")
    assert code == 0
    image = "bf16" if precision == "auto" and HAS_BF16 else "fp32"
    assert json.loads(out)["encoder"] == {"backend": "openvino", "device": "cpu",
                                          "precision": {"image": image, "text": "fp32"}}


@pytest.mark.parametrize("native", [True, False], ids=["bf16-cpu", "no-bf16-cpu"])
@pytest.mark.parametrize("backend", ["openvino", "torch"])
def test_auto_runs_the_image_tower_in_bf16_where_the_cpu_has_it(tmp_path: Path, backend: str, native: bool,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """auto on OpenVINO: the image tower bf16 and the text tower f32 where the CPU has native bf16 (OpenVINO's
    one CPU check, which Zen 5's avx512_bf16 and Sapphire Rapids' AMX both answer yes, is forced each way), f32
    elsewhere; on PyTorch (the reference) f32. bf16 asked for runs both towers in bf16 on either runtime."""
    monkeypatch.setattr(towers, "native_bf16", lambda core: native)
    cache = tmp_path / "models"
    auto = load_encoder(tiny_settings(tmp_path, cache, backend=backend, precision="auto"))
    assert auto.precision == "auto"
    image = "bf16" if backend == "openvino" and native and HAS_BF16 else "fp32"
    assert auto.runtime()["precision"] == {"image": image, "text": "fp32"}
    fp32 = load_encoder(tiny_settings(tmp_path, cache, backend=backend, precision="fp32"))
    texts = ["红色的圆形", "蓝色的正方形"]
    np.testing.assert_allclose(auto.encode_texts(texts), fp32.encode_texts(texts), atol=1e-6)
    pixels = np.random.default_rng(1).standard_normal((2, 3, auto.resolution, auto.resolution), dtype=np.float32)
    if image == "fp32":
        np.testing.assert_allclose(auto.encode_pixels(pixels), fp32.encode_pixels(pixels), atol=1e-5)
    else:
        assert not np.array_equal(auto.encode_pixels(pixels), fp32.encode_pixels(pixels))
    if HAS_BF16 and native:
        bf16 = load_encoder(tiny_settings(tmp_path, cache, backend=backend, precision="bf16"))
        assert bf16.runtime()["precision"] == {"image": "bf16", "text": "bf16"}
        assert not np.array_equal(auto.encode_texts(texts), bf16.encode_texts(texts))


@needs_bf16
def test_auto_keeps_the_probe_guard(tmp_path: Path, poison: dict[str, str], probes: list[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """auto's bf16 image tower goes through the guard: a drifting one is served in f32; its f32 text tower needs
    no probe."""
    monkeypatch.setattr(towers, "native_bf16", lambda core: True)
    poison.update(image="nan")
    auto = _encoder(tmp_path, tmp_path / "models", "auto")
    assert auto.runtime()["precision"] == {"image": "fp32", "text": "fp32"}
    assert probes == ["image"]
    pixels = np.zeros((2, 3, auto.resolution, auto.resolution), dtype=np.float32)
    assert np.isfinite(auto.encode_pixels(pixels)).all()
