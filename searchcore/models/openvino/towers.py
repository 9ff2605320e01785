"""OpenVINO backend for both Chinese-CLIP towers: conversion, on-disk IR cache and (async) inference."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import re
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from searchcore.errors import CacheError
from searchcore.models import cache_entries
from searchcore.models.openvino.compiled import (
    BLOB_CACHE,
    compile_cached,
    hints,
    native_bf16,
    ov,
    precision_of,
    props,
    user_precision,
    verified_files,
)
from searchcore.models.preprocess import MEAN, STD

logger = logging.getLogger(__name__)
T = TypeVar("T")

_FORMAT_VERSION = 1
_TOWERS = ("image", "text")
_MODES = {"image": hints.PerformanceMode.THROUGHPUT, "text": hints.PerformanceMode.LATENCY}


def _ov_version_tag() -> str:
    """Short, path-safe OpenVINO build tag, e.g. '2026.4.1-22982'."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", "-".join(ov.get_version().split("-")[:2]))


def _safe_name(key: str) -> str:
    """Map a caller cache key to a single safe path component."""
    safe = re.sub(r"[^A-Za-z0-9._@+-]+", "_", key).strip(".") or "key"
    if safe != key or len(safe) > 100:
        safe = f"{safe[:80]}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    return safe


_MIN_CALIBRATION = 32  # fewer images than this make a poor int8 calibration: keep the float tower
_PROBE_COSINE = {"bf16": 0.999, "f16": 0.999, "i8": 0.99, "u8": 0.99}
_PROBE_TOKENS = (
    (101, 671, 1372, 4344, 102),  # 一只猫
    (101, 3862, 6804, 4638, 3189, 5862, 102),  # 海边的日落
    (101, 9276, 10875, 5273, 5682, 3749, 6756, 102),  # red car 红色汽车
)


def _probe_input(tower: str, resolution: int, context_length: int) -> np.ndarray:
    """A fixed, photo-like probe: smooth colour fields with edges for images, real phrases for text."""
    if tower == "text":
        tokens = np.zeros((len(_PROBE_TOKENS), context_length), dtype=np.int64)
        for row, ids in enumerate(_PROBE_TOKENS):
            tokens[row, : len(ids)] = ids
        return tokens
    y, x = np.mgrid[0:resolution, 0:resolution].astype(np.float32) / max(resolution - 1, 1)
    disc = ((x - 0.6) ** 2 + (y - 0.4) ** 2 < 0.08).astype(np.float32)
    first = np.stack([x, y, 1 - x]) * 0.8 + disc * 0.2
    second = np.stack([np.sin(6 * x) * 0.5 + 0.5, disc, (x + y) / 2])
    pixels = np.stack([first, second])  # in [0,1], then normalised like cn_clip's transform
    return np.ascontiguousarray((pixels - MEAN) / STD, dtype=np.float32)


def judge_probe(reduced: np.ndarray, reference: np.ndarray, threshold: float) -> dict[str, Any]:
    """Verdict on reduced-precision probe features against f32: finite, and cosine >= threshold per row."""
    if not np.isfinite(reduced).all():
        return {"verdict": "fail", "reason": "features are not finite (NaN or inf)", "min_cosine": None}
    dots = (reduced * reference).sum(axis=1)
    norms = np.linalg.norm(reduced, axis=1) * np.linalg.norm(reference, axis=1)
    cosine = float(np.min(dots / np.maximum(norms, 1e-12)))
    if cosine < threshold:
        return {"verdict": "fail", "reason": f"cosine {cosine:.5f} with f32 is below {threshold}",
                "min_cosine": cosine}
    return {"verdict": "pass", "reason": f"cosine {cosine:.5f} with f32", "min_cosine": cosine}


class OpenVINOTowers:
    """Both Chinese-CLIP towers converted to OpenVINO IR, cached on disk and compiled for CPU.

    Each tower is compiled (and its precision checked) on its first use, so a text query never compiles the
    image tower (seconds on a CPU); reading tower_precision compiles both, to report what really runs.
    """

    def __init__(
        self,
        model: Any = None,
        *,
        loader: Callable[[], Any] | None = None,
        resolution: int,
        precision: str,
        cache_dir: Path,
        cache_key: str,
        context_length: int = 52,
    ) -> None:
        if precision not in ("auto", "fp32", "bf16", "int8"):
            raise ValueError(f"precision must be 'auto', 'fp32', 'bf16' or 'int8', got {precision!r}")
        if model is not None:
            loader = lambda: model  # noqa: E731
        if loader is None:
            raise ValueError("give the torch model or a loader for it")
        self._model_source: Callable[[], Any] = loader
        self.resolution = int(resolution)
        self.context_length = int(context_length)
        self.precision = precision
        self.cache_dir = Path(cache_dir)
        self.entry_dir = self.cache_dir / f"{_safe_name(cache_key)}-ir{_FORMAT_VERSION}-ov{_ov_version_tag()}"
        self._core = ov.Core()
        self._remove_legacy_blobs()
        image_model, text_model = self._load_or_build()
        self._models = {"image": image_model, "text": text_model}
        self.dim = int(image_model.output(0).get_partial_shape()[1].get_length())
        text_dim = int(text_model.output(0).get_partial_shape()[1].get_length())
        if text_dim != self.dim:
            raise ValueError(f"image dim {self.dim} != text dim {text_dim}")
        self._compiled: dict[str, ov.CompiledModel] = {}  # the towers used so far
        self._requests: dict[str, ov.InferRequest] = {}
        self._precision: dict[str, str] = {}  # each compiled tower's, in SEARCHCORE_PRECISION's words
        self._jobs = 1
        self._compile_lock = threading.Lock()
        self._image_lock = threading.Lock()
        self._text_lock = threading.Lock()
        self._int8_calibration: str | None = None  # digest of the sample the int8 image tower was calibrated on
        logger.info("OpenVINO towers read: %s, precision=%s, dim=%d", self.entry_dir.name, precision, self.dim)

    # ------------------------------------------------------------ lazy towers

    @property
    def tower_precision(self) -> dict[str, str]:
        """The precision each tower really runs at, in SEARCHCORE_PRECISION's words (compiles any unused one)."""
        for tower in _TOWERS:
            self._tower(tower)
        return dict(self._precision)

    @property
    def jobs(self) -> int:
        """How many image requests run at once (compiles the image tower)."""
        self._tower("image")
        return self._jobs

    @property
    def _image(self) -> ov.CompiledModel:
        """The image tower (compiled on first use)."""
        return self._tower("image")

    @property
    def _text(self) -> ov.CompiledModel:
        """The text tower (compiled on first use)."""
        return self._tower("text")

    def _tower(self, tower: str) -> ov.CompiledModel:
        """One tower, compiled and checked by the precision guard on its first use."""
        compiled = self._compiled.get(tower)
        if compiled is None:
            with self._compile_lock:  # another thread may have compiled it meanwhile
                compiled = self._compiled.get(tower)
                if compiled is None:
                    compiled = self._ready(tower)
        return compiled

    def _ready(self, tower: str) -> ov.CompiledModel:
        """Compile a tower through the precision guard (the image tower then takes a recorded int8 one)."""
        started = time.perf_counter()
        self._use(tower, self._serve(tower, self._models[tower], _MODES[tower], self._wanted_precision(tower)))
        if tower == "image" and self.precision == "int8":
            self._load_recorded_int8()
        logger.info("OpenVINO %s tower ready in %.2fs: %s%s", tower, time.perf_counter() - started,
                    self._precision[tower], f", {self._jobs} jobs" if tower == "image" else "")
        return self._compiled[tower]

    def _use(self, tower: str, compiled: ov.CompiledModel, precision: str | None = None) -> None:
        """Serve a compiled tower from now on."""
        self._requests[tower] = compiled.create_infer_request()
        if tower == "image":
            self._jobs = max(1, int(compiled.get_property(props.optimal_number_of_infer_requests)))
        self._precision[tower] = precision or user_precision(compiled)
        self._compiled[tower] = compiled

    # ----------------------------------------------------------------- inference

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """float32 [n,3,R,R] preprocessed pixels -> float32 [n,dim] unnormalised image features."""
        pixels = self._check_pixels(pixels)
        self._tower("image")
        n = pixels.shape[0]
        if n == 1 or self.jobs == 1:
            with self._image_lock:
                return self._infer(self._requests["image"], pixels)
        step = min(64, math.ceil(n / self.jobs))  # one chunk per stream so every core works
        chunks = ((i, pixels[i : i + step]) for i in range(0, n, step))
        return np.concatenate([feats for _, feats in self.encode_pixel_batches(chunks)])

    def encode_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """int64 [n,L] cn_clip token ids -> float32 [n,dim] unnormalised text features."""
        tokens = np.ascontiguousarray(np.asarray(tokens), dtype=np.int64)
        if tokens.ndim != 2 or tokens.shape[0] < 1 or tokens.shape[1] != self.context_length:
            raise ValueError(f"tokens must be [n>=1,{self.context_length}], got {tokens.shape}")
        self._tower("text")
        with self._text_lock:
            return self._infer(self._requests["text"], tokens)

    def encode_pixel_batches(self, batches: Iterable[tuple[T, np.ndarray]]) -> Iterator[tuple[T, np.ndarray]]:
        """Stream (payload, pixels) through an AsyncInferQueue; yield (payload, features) in input order.

        The input is pulled lazily; at most `jobs` batches run at once and at most 2*`jobs` un-yielded
        results are held. If the input (or inference) raises, in-flight requests are drained first and the
        exception propagates; results not yet yielded at that point are dropped.
        """
        if self.precision == "int8":
            # Calibrate before the queue takes its tower, so that the stream that calibrates runs in int8 too.
            calibrated = self._calibrated_on_head(batches)
            first = next(calibrated, None)
            if first is None:
                return
            batches = itertools.chain([first], calibrated)
        queue = ov.AsyncInferQueue(self._image, self.jobs)
        done: dict[int, np.ndarray] = {}

        def on_done(request: ov.InferRequest, index: int) -> None:
            done[index] = request.get_output_tensor(0).data.astype(np.float32, copy=True)

        queue.set_callback(on_done)
        pending: deque[tuple[int, T]] = deque()  # in flight or finished but not yet yielded
        limit = 2 * self.jobs  # bounds results held while the oldest batch is still running
        try:
            for index, (payload, pixels) in enumerate(batches):
                pixels = self._check_pixels(pixels)
                if len(pending) >= limit:
                    queue.wait_all()
                queue.start_async({0: pixels}, index)  # blocks while all `jobs` requests are busy
                pending.append((index, payload))
                while pending and pending[0][0] in done:
                    head, head_payload = pending.popleft()
                    yield head_payload, done.pop(head)
            queue.wait_all()
        except BaseException:
            self._drain(queue)  # in-flight requests still reference `done`/inputs: let them finish
            raise
        while pending:
            head, head_payload = pending.popleft()
            if head not in done:
                raise RuntimeError(f"OpenVINO request for batch {head} finished without a result")
            yield head_payload, done.pop(head)

    # ------------------------------------------------------------------- helpers

    def _check_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Validate and make pixels a C-contiguous float32 [n,3,R,R] array."""
        pixels = np.ascontiguousarray(np.asarray(pixels), dtype=np.float32)
        expected = (3, self.resolution, self.resolution)
        if pixels.ndim != 4 or pixels.shape[0] < 1 or pixels.shape[1:] != expected:
            raise ValueError(f"pixels must be [n>=1,{','.join(map(str, expected))}], got {pixels.shape}")
        return pixels

    @staticmethod
    def _infer(request: ov.InferRequest, data: np.ndarray) -> np.ndarray:
        """Synchronous inference on one request; returns a private float32 copy of output 0."""
        request.infer({0: data})
        return request.get_output_tensor(0).data.astype(np.float32, copy=True)

    @staticmethod
    def _drain(queue: ov.AsyncInferQueue) -> None:
        """Wait for in-flight requests while another exception is already propagating."""
        try:
            queue.wait_all()
        except Exception:  # noqa: BLE001 - the original exception matters more
            logger.warning("OpenVINO request failed while unwinding", exc_info=True)

    def _wanted_precision(self, tower: str) -> ov.Type:
        """The inference precision to ask the CPU plugin for a tower.

        bf16 asked: both towers bf16; int8: its text tower bf16 (the image tower is quantized afterwards); auto:
        the image tower bf16 and the text tower f32. bf16 only where the CPU computes it natively.
        """
        if self.precision == "fp32" or (self.precision == "auto" and tower == "text"):
            return ov.Type.f32
        if native_bf16(self._core):
            return ov.Type.bf16
        if self.precision != "auto":
            logger.warning("CPU lacks native BF16; compiling in f32")
        return ov.Type.f32

    def _compile(self, model: ov.Model, mode: hints.PerformanceMode, precision: ov.Type) -> ov.CompiledModel:
        """Compile for CPU with the performance hint and precision hint; blobs cached per precision and mode."""
        config: dict[Any, Any] = {hints.performance_mode: mode, hints.inference_precision: precision}
        return compile_cached(self._core, model, config, self.cache_dir, str(mode).rsplit(".", 1)[-1].lower())

    # ---------------------------------------------------------------------- int8

    def _calibrated_on_head(self, batches: Iterable[tuple[T, np.ndarray]]) -> Iterator[tuple[T, np.ndarray]]:
        """Hold the stream's first images, calibrate the int8 image tower on them, then pass everything on."""
        from searchcore.models.openvino.int8 import CALIBRATION_SIZE

        stream = iter(batches)
        head: list[tuple[T, np.ndarray]] = []
        held = 0
        for payload, pixels in stream:
            head.append((payload, pixels))
            held += len(pixels)
            if held >= CALIBRATION_SIZE:
                break
        if held >= _MIN_CALIBRATION:
            self.calibrate(np.concatenate([pixels for _, pixels in head])[:CALIBRATION_SIZE])
        elif self._int8_calibration is None:
            self._tower("image")  # compiled (and its precision known) on first use
            logger.info("int8: %d images are too few to calibrate on; the image tower stays in %s",
                        held, self._precision["image"])
        yield from head
        yield from stream

    def calibrate(self, calibration: np.ndarray) -> None:
        """Serve the image tower in int8, quantized (or read from the cache) for this calibration sample.

        The int8 tower must pass the probe against f32 (cosine >= 0.99); otherwise it is not used.
        """
        from searchcore.models.openvino.int8 import cached_int8_model, calibration_digest

        calibration = self._check_pixels(calibration)
        self._tower("image")  # the guarded tower, with the int8 one recorded for this entry if there is one
        digest = calibration_digest(calibration)
        if digest == self._int8_calibration:
            return
        source: Any = self.entry_dir / "image.xml"
        if not source.is_file():  # uncached run: quantize the in-memory IR
            source = self._models["image"]
        int8_dir = self.cache_dir / "int8"
        model = cached_int8_model(self._core, source, calibration, int8_dir, key_parts=[self.entry_dir.name])
        if self._adopt_int8(model, digest):
            self._update_manifest(lambda data: data.update({"int8": {"calibration": digest}}))

    def _adopt_int8(self, model: ov.Model, digest: str) -> bool:
        """Swap in an int8 image tower when its probe passes; say so and keep the current one otherwise."""
        mode = hints.PerformanceMode.THROUGHPUT
        compiled = self._compile(model, mode, ov.Type.f32)  # int8 weights, f32 for what stays in float
        verdict = self._probe("image", self._models["image"], mode, compiled, _PROBE_COSINE["i8"])
        if verdict["verdict"] != "pass":
            logger.warning("int8 image tower failed its check against f32 (%s); the image tower stays in %s",
                           verdict["reason"], self._precision["image"])
            return False
        with self._image_lock:
            self._use("image", compiled, "int8")
        self._int8_calibration = digest
        logger.info("image tower runs in int8 (%s)", verdict["reason"])
        return True

    def _load_recorded_int8(self) -> None:
        """Start with the int8 image tower of the last calibration recorded for this entry, if it is cached."""
        from searchcore.models.openvino.int8 import find_entry, load_entry

        recorded = self._manifest().get("int8")
        digest = recorded.get("calibration") if isinstance(recorded, dict) else None
        if not isinstance(digest, str):
            return
        entry = find_entry(self.cache_dir / "int8", digest, [self.entry_dir.name])
        if entry is None:
            return
        try:
            self._adopt_int8(load_entry(self._core, entry), digest)
        except Exception as exc:  # noqa: BLE001 - a broken entry only means calibrating again at the next ingest
            logger.warning("could not load the int8 image tower in %s: %s", entry, exc)

    # ------------------------------------------------------------ precision guard

    def _serve(self, tower: str, model: ov.Model, mode: hints.PerformanceMode, wanted: ov.Type) -> ov.CompiledModel:
        """Compile one tower at the asked precision; serve it in f32 when a reduced precision drifts.

        A reduced-precision tower encodes a fixed probe once per cache entry (model, precision and
        OpenVINO version) and is compared with f32: the features must be finite with cosine >= the
        precision's threshold. The verdict is kept in the entry's manifest, so later starts trust it.
        """
        compiled = self._compile(model, mode, wanted)
        actual = precision_of(compiled)
        if actual == "f32":
            return compiled
        verdict = self._verdicts().get(tower, {}).get(actual)
        if not isinstance(verdict, dict) or verdict.get("verdict") not in ("pass", "fail"):
            verdict = self._probe(tower, model, mode, compiled)
            self._record_verdict(tower, actual, verdict)
        if verdict["verdict"] == "pass":
            return compiled
        logger.warning(
            "OpenVINO %s tower in %s failed its check against f32 (%s); serving the %s tower in f32",
            tower, actual, verdict.get("reason", "no reason recorded"), tower,
        )
        return self._compile(model, mode, ov.Type.f32)

    def _probe(self, tower: str, model: ov.Model, mode: hints.PerformanceMode, compiled: ov.CompiledModel,
               threshold: float | None = None) -> dict[str, Any]:
        """Encode the fixed probe with a reduced-precision tower and with the f32 one (model); the verdict."""
        probe = _probe_input(tower, self.resolution, self.context_length)
        reference = self._infer(self._compile(model, mode, ov.Type.f32).create_infer_request(), probe)
        reduced = self._infer(compiled.create_infer_request(), probe)
        if threshold is None:
            threshold = _PROBE_COSINE.get(precision_of(compiled), 0.999)
        return judge_probe(reduced, reference, threshold)

    def _manifest(self) -> dict[str, Any]:
        """This entry's manifest ({} when it cannot be read)."""
        try:
            manifest = json.loads((self.entry_dir / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return manifest if isinstance(manifest, dict) else {}

    def _verdicts(self) -> dict[str, Any]:
        """Probe verdicts recorded in this entry's manifest ({} when there are none)."""
        probes = self._manifest().get("probes")
        return probes if isinstance(probes, dict) else {}

    def _record_verdict(self, tower: str, precision: str, verdict: dict[str, Any]) -> None:
        """Write a probe verdict into the entry's manifest."""
        self._update_manifest(lambda data: data.setdefault("probes", {}).setdefault(tower, {}).update(
            {precision: verdict}))

    def _update_manifest(self, change: Callable[[dict[str, Any]], object]) -> None:
        """Apply a change to the entry's manifest atomically; an unwritable cache just keeps no record."""
        cache_entries.update_json(self.entry_dir / "manifest.json", change)

    def _remove_legacy_blobs(self) -> None:
        """Delete blobs an older version left in the shared folder (they may hold the wrong precision)."""
        for blob in (self.cache_dir / BLOB_CACHE).glob("*.blob"):
            with contextlib.suppress(OSError):  # a read-only cache keeps them; its entries are checked anyway
                blob.unlink()

    # --------------------------------------------------------------------- cache

    def _manifest_meta(self) -> dict[str, Any]:
        """Fields a cache entry must match besides its file hashes."""
        return {
            "format": _FORMAT_VERSION,
            "openvino": ov.get_version(),
            "resolution": self.resolution,
            "context_length": self.context_length,
        }

    def _load_or_build(self) -> tuple[ov.Model, ov.Model]:
        """Return (image, text) ov.Models from a verified cache entry, rebuilding it (torch) if needed."""
        if self.entry_dir.exists():
            try:
                return self._read_entry(self.entry_dir)
            except Exception as exc:  # noqa: BLE001 - anything wrong with the entry means rebuild
                logger.warning("rebuilding OpenVINO IR cache entry %s: %s", self.entry_dir, exc)
        started = time.perf_counter()
        image, text = self._convert(self._model_source())
        logger.info("converted CLIP towers to OpenVINO in %.1fs", time.perf_counter() - started)
        try:
            self._save(image, text)
        except OSError as exc:  # e.g. read-only cache dir: still serve, just without the IR cache
            logger.warning("could not write OpenVINO IR cache %s (%s); running uncached", self.entry_dir, exc)
            return image, text
        return self._read_entry(self.entry_dir)  # serve exactly what later runs will load

    def _read_entry(self, entry: Path) -> tuple[ov.Model, ov.Model]:
        """Verify an entry's manifest (metadata, sizes, sha256) and read both IR models."""
        expected = {f"{tower}.{ext}" for tower in _TOWERS for ext in ("xml", "bin")}
        fresh = verified_files(entry, self._manifest_meta(), expected, CacheError, known=True)
        if fresh:
            self._update_manifest(lambda data: data.setdefault("verified", {}).update(fresh))
        image = self._core.read_model(entry / "image.xml", entry / "image.bin")
        text = self._core.read_model(entry / "text.xml", entry / "text.bin")
        self._check_io(image, [-1, 3, self.resolution, self.resolution])
        self._check_io(text, [-1, self.context_length])
        return image, text

    @staticmethod
    def _check_io(model: ov.Model, input_shape: list[int]) -> None:
        """Ensure a cached model has one input of the expected (dynamic-batch) shape and one output."""
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise CacheError("unexpected number of model inputs/outputs")
        if model.input(0).get_partial_shape() != ov.PartialShape(input_shape):
            raise CacheError(f"unexpected input shape {model.input(0).get_partial_shape()}")

    def _save(self, image: ov.Model, text: ov.Model) -> None:
        """Save both IRs plus a manifest (written last) in a temp dir, then publish it atomically."""
        with cache_entries.building(self.entry_dir) as tmp:
            for tower, converted in zip(_TOWERS, (image, text)):
                ov.save_model(converted, tmp / f"{tower}.xml", compress_to_fp16=False)
            files = cache_entries.describe(tmp, sorted(p.name for p in tmp.iterdir()))
            manifest = {"meta": self._manifest_meta(), "files": files}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
            cache_entries.publish(tmp, self.entry_dir)
            logger.info("cached OpenVINO IR in %s", self.entry_dir)

    def _convert(self, model: Any) -> tuple[ov.Model, ov.Model]:
        """Trace both towers of a fp32 cn_clip CLIP with dynamic batch; the torch model is left as it was."""
        import torch  # only conversion needs torch: a cached entry is served without it

        class Tower(torch.nn.Module):
            """One traceable tower: encode_image (ViT or ModifiedResNet) or encode_text (pad mask = tokens != 0)."""

            def __init__(self, method: str) -> None:
                super().__init__()
                self.clip = model
                self.method = method

            def forward(self, inputs: torch.Tensor) -> torch.Tensor:
                return getattr(self.clip, self.method)(inputs)

        param = next(model.parameters())
        if param.dtype != torch.float32 or param.device.type != "cpu":
            raise ValueError(f"expected a float32 CPU model, got {param.dtype} on {param.device}")
        size = self.resolution
        pixels = torch.zeros(2, 3, size, size)
        tokens = torch.zeros(2, self.context_length, dtype=torch.int64)
        tokens[:, :4] = torch.tensor([101, 704, 1744, 102])  # [CLS] .. [SEP] then [PAD]=0
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape asserts baked in for fixed R/L
                warnings.filterwarnings("ignore", r"`torch\.jit\.trace", FutureWarning)
                image = ov.convert_model(
                    Tower("encode_image"), example_input=pixels, input=[ov.PartialShape([-1, 3, size, size])]
                )
                text = ov.convert_model(
                    Tower("encode_text"),
                    example_input=tokens,
                    input=[(ov.PartialShape([-1, self.context_length]), ov.Type.i64)],
                )
        finally:
            model.train(was_training)
        for converted, name in ((image, "pixels"), (text, "tokens")):
            converted.input(0).get_tensor().set_names({name})
            converted.output(0).get_tensor().set_names({"features"})
        return image, text
