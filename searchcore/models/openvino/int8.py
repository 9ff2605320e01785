"""int8 post-training quantization of the OpenVINO image tower with NNCF, and an on-disk cache of the result.

Only the image tower is quantized: it is where ingest spends its time, while a query encodes one short text.
nncf (and through it torch) is imported only when a model is actually quantized; loading a cached int8 IR
needs openvino alone. Import openvino through searchcore.models.openvino.towers first (telemetry opt-out).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import inspect
import io
import itertools
import json
import logging
import random
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from searchcore.errors import Int8CacheError
from searchcore.models import cache_entries
from searchcore.models.openvino.compiled import verified_files

if TYPE_CHECKING:
    import openvino as ov

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CALIBRATION_SIZE = 128  # as faithful as 300 on the tiny model (tests/models/test_int8.py), 2-3x faster
_FILES = ("image.xml", "image.bin")
_PROJECTION_TYPES = {"MatMul", "Convolution"}
_VNNI_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}  # /proc/cpuinfo's words for an int8 dot product unit


def has_vnni(cpuinfo: str | None = None) -> bool:
    """True when the CPU multiplies int8 with 32-bit sums (VNNI, AMX); False on an AVX2-only CPU, whose int8
    kernels add pairs of u8*s8 products in 16 bits and so saturate on full-range weights. Unknown: False."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return bool(_VNNI_FLAGS.intersection(flags))


# NNCF's overflow fix: "enable" keeps every layer's weights to 7 bits, so an AVX2-only CPU's 16-bit sums cannot
# saturate (without it the tiny ViT's worst held-out cosine there was 0.977, with it above 0.99); on a VNNI or
# AMX CPU NNCF's default, the first layer only, gives full-range weights elsewhere (tests/models/test_int8.py).
OVERFLOW_FIX = "first_layer_only" if has_vnni() else "enable"


def calibration_sample(pixels: Iterable[np.ndarray], size: int = CALIBRATION_SIZE, *, seed: int | None = None
                       ) -> np.ndarray:
    """Pick a deterministic calibration sample, float32 [m<=size,3,R,R], from [3,R,R] images or [n,3,R,R] batches.

    seed=None takes the first `size` images and stops reading there, so ingest can calibrate on the head of
    its stream. With a seed, a reservoir sample over the whole stream (same stream and seed, same sample).
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    images = (image for item in pixels for image in (item if np.ndim(item) == 4 else [item]))
    if seed is None:
        chosen = list(itertools.islice(images, size))
    else:
        rng = random.Random(seed)
        chosen = []
        for seen, image in enumerate(images):
            if seen < size:
                chosen.append(image)
            elif (slot := rng.randrange(seen + 1)) < size:
                chosen[slot] = image
    if not chosen:
        raise ValueError("no images to calibrate on")
    return np.ascontiguousarray(np.stack(chosen), dtype=np.float32)


def is_transformer(model: ov.Model) -> bool:
    """True for a ViT image tower: its LayerNorms become MVN ops; ModifiedResNet (RN50) has none."""
    return any(op.get_type_name() == "MVN" for op in model.get_ops())


def output_projection(model: ov.Model) -> list[str]:
    """Names of the last MatMul/Convolution on each path to the output (the tower's final projection)."""
    found: list[str] = []
    stack = [out.get_node() for out in model.outputs]
    seen: set[str] = set()
    while stack:
        node = stack.pop()
        if node.get_friendly_name() in seen:
            continue
        seen.add(node.get_friendly_name())
        if node.get_type_name() in _PROJECTION_TYPES:
            found.append(node.get_friendly_name())
            continue
        inputs = (value.get_node() for value in node.input_values())
        stack.extend(source for source in inputs if source.get_type_name() != "Constant")
    return sorted(found)


def quantize_image_model(model: ov.Model, calibration: np.ndarray | Iterable[np.ndarray], *,
                         preset: str = "performance", subset_size: int = CALIBRATION_SIZE,
                         smooth_quant_alpha: float = 0.5, keep_projection: bool = True,
                         overflow_fix: str = OVERFLOW_FIX) -> ov.Model:
    """Quantize a fp32 image tower (pixels [n,3,R,R] -> features) to int8 with NNCF post-training quantization.

    calibration is preprocessed float32 pixels, one [n,3,R,R] array or [3,R,R]/[n,3,R,R] items; the first
    subset_size images are fed one at a time (per-image statistics, as NNCF expects). Settings, chosen for
    embedding fidelity and measured on the tiny model (tests/models/test_int8.py):

    - preset "performance": symmetric int8 weights and activations, the fastest AMX-INT8/VNNI kernels.
      "mixed" (asymmetric activations) was worse on the tiny ViT (worst cosine 0.9966 vs 0.9978).
    - ViT towers (auto-detected: LayerNorm, i.e. MVN ops) get model_type TRANSFORMER, which keeps
      LayerNorm, Softmax and attention itself in float and runs SmoothQuant first, with alpha 0.5
      (SmoothQuant's value for BERT/ViT-sized models; NNCF's 0.95 is tuned for LLM outlier channels),
      and activation ranges from the min/max over the whole sample (MINMAX) instead of NNCF's mean of
      per-image min/max: CLIP ViTs have a few large activations that the mean clips, which cost more
      than anything else (same top-10 for 66-79% of texts with the mean, 84-98% with MINMAX).
      ModifiedResNet (RN50) towers keep NNCF's CNN defaults.
    - The final projection stays in float (keep_projection): it runs on one pooled vector per image,
      so int8 there saves no time, while its rounding error goes straight into every embedding.
    - Fast bias correction (NNCF's default): full bias correction was no more faithful here, is several
      times slower, and failed on some graphs with ignored layers.
    - Overflow fix (OVERFLOW_FIX): NNCF's default, the first layer only, on a VNNI or AMX CPU (disabling it
      made no measurable difference there); every layer on a CPU without VNNI, whose 16-bit sums saturate.
      It is part of the cache key, so an IR quantized for one kind of CPU is not taken on the other.
    """
    nncf = _import_nncf()
    from nncf.quantization.advanced_parameters import OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    images = calibration_sample([calibration] if isinstance(calibration, np.ndarray) else calibration,
                                size=max(1, subset_size))
    transformer = is_transformer(model)
    ignored = output_projection(model) if keep_projection else []
    advanced = nncf.AdvancedQuantizationParameters(
        smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=smooth_quant_alpha))
    if transformer:
        advanced.activations_range_estimator_params = RangeEstimatorParametersSet.MINMAX
    advanced.overflow_fix = OverflowFix(overflow_fix)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # NNCF draws progress bars on stdout
        quantized = nncf.quantize(
            model,
            nncf.Dataset([image[None] for image in images]),
            preset=nncf.QuantizationPreset(preset),
            target_device=nncf.TargetDevice.CPU,
            subset_size=len(images),
            model_type=nncf.ModelType.TRANSFORMER if transformer else None,
            ignored_scope=nncf.IgnoredScope(names=ignored, validate=False) if ignored else None,
            advanced_parameters=advanced,
        )
    logger.info("quantized image tower to int8 (%s, %s, %d images, float: %s) in %.1fs",
                "ViT" if transformer else "CNN", preset, len(images), ignored, time.perf_counter() - started)
    return quantized


def _import_nncf() -> Any:
    """Import nncf (lazily: it pulls in torch and scikit-learn) with its log records sent to logging, not stdout."""
    try:
        import nncf
    except ImportError as exc:
        raise ImportError("int8 quantization needs nncf: pip install 'nncf>=3.4'") from exc
    nncf_logger = logging.getLogger("nncf")
    for handler in list(nncf_logger.handlers):
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__):
            nncf_logger.removeHandler(handler)
    nncf_logger.setLevel(logging.NOTSET)
    nncf_logger.propagate = True
    return nncf


def calibration_digest(calibration: np.ndarray) -> str:
    """sha256 of a calibration sample's shape, dtype and bytes."""
    array = np.ascontiguousarray(calibration)
    digest = hashlib.sha256(f"{array.shape}|{array.dtype.str}|".encode())
    digest.update(array.data)
    return digest.hexdigest()


def cached_int8_model(core: ov.Core, model: str | Path | ov.Model, calibration: np.ndarray, cache_dir: str | Path,
                      key_parts: Sequence[str] = (), **settings: Any) -> ov.Model:
    """The int8 image tower for (model, calibration sample), read from cache_dir or quantized and cached there.

    model is the fp32 IR's .xml path (identified by the sha256 of its .xml and .bin) or an ov.Model, which
    key_parts must then identify. The entry folder is keyed by a hash of that identity, the calibration
    digest, the nncf/openvino versions, this module's format version and the quantization settings
    (passed on to quantize_image_model). Entries are published atomically and verified against their
    manifest on load; a corrupt or mismatched entry is rebuilt. Loading a cached entry does not import nncf.
    """
    import openvino as ov  # already imported (and telemetry opted out) by whoever made `core`

    calibration = np.ascontiguousarray(calibration, dtype=np.float32)
    bound = inspect.signature(quantize_image_model).bind(model, calibration, **settings)
    bound.apply_defaults()
    settings = {name: value for name, value in bound.arguments.items() if name not in ("model", "calibration")}
    identity: dict[str, Any] = {"key": list(key_parts)}
    if isinstance(model, ov.Model) and not key_parts:
        raise ValueError("an in-memory model needs key_parts that identify it (or pass its IR's .xml path)")
    if not isinstance(model, ov.Model):
        xml = Path(model)
        identity["ir"] = {"xml": cache_entries.sha256(xml), "bin": cache_entries.sha256(xml.with_suffix(".bin"))}
    meta = {"format": FORMAT_VERSION, "model": identity, "calibration": calibration_digest(calibration),
            "openvino": ov.get_version(), "nncf": _nncf_version(), "settings": settings}
    name = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:24]
    cache_dir = Path(cache_dir)
    entry = cache_dir / f"int8-{name}"
    if entry.exists():
        try:
            return _read_entry(core, entry, meta)
        except Exception as exc:  # noqa: BLE001 - anything wrong with the entry means rebuild
            logger.warning("rebuilding int8 cache entry %s: %s", entry, exc)
    fp32 = model if isinstance(model, ov.Model) else core.read_model(Path(model))
    quantized = quantize_image_model(fp32, calibration, **settings)
    try:
        _save(quantized, entry, meta)
    except OSError as exc:  # read-only cache: still serve, just without the cache
        logger.warning("could not write int8 cache %s (%s); running uncached", entry, exc)
        return quantized
    return _read_entry(core, entry, meta)  # serve exactly what later runs will load


def _nncf_version() -> str:
    """nncf's version without importing it."""
    try:
        return importlib.metadata.version("nncf")
    except importlib.metadata.PackageNotFoundError:
        return "not-installed"


def find_entry(cache_dir: str | Path, calibration: str, key_parts: Sequence[str]) -> Path | None:
    """The cached entry quantized from the model key_parts name with the calibration sample of that digest."""
    for manifest in sorted(Path(cache_dir).glob("int8-*/manifest.json")):
        try:
            meta = json.loads(manifest.read_text(encoding="utf-8"))["meta"]
            if meta["calibration"] == calibration and meta["model"]["key"] == list(key_parts):
                return manifest.parent
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def load_entry(core: ov.Core, entry: Path) -> ov.Model:
    """A cached entry's int8 model, its files verified against its own manifest."""
    try:
        meta = json.loads((entry / "manifest.json").read_text(encoding="utf-8"))["meta"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Int8CacheError(f"unreadable manifest: {exc}") from exc
    return _read_entry(core, entry, meta)


def _read_entry(core: ov.Core, entry: Path, meta: dict[str, Any]) -> ov.Model:
    """Verify an entry's manifest (metadata, sizes, sha256) and read its model."""
    verified_files(entry, meta, set(_FILES), Int8CacheError)
    return core.read_model(entry / "image.xml", entry / "image.bin")


def _save(model: ov.Model, entry: Path, meta: dict[str, Any]) -> None:
    """Write the IR and its manifest (last) in a temp dir, then rename it into place."""
    import openvino as ov

    with cache_entries.building(entry) as tmp:
        ov.save_model(model, tmp / "image.xml", compress_to_fp16=False)
        files = cache_entries.describe(tmp, _FILES)
        (tmp / "manifest.json").write_text(json.dumps({"meta": meta, "files": files}, indent=1), encoding="utf-8")
        cache_entries.publish(tmp, entry)
