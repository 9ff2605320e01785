"""Chinese-CLIP encoders: the only module that imports cn_clip.

Loads an official model by name, a fine-tuned cn_clip checkpoint, or a
self-describing checkpoint, and encodes images and texts into L2-normalised
float32 vectors. PyTorch is the reference (and GPU) path; on a CPU, OpenVINO
runs both towers when it is installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
from PIL import Image

from searchcore.config import Settings
from searchcore.errors import ConfigError, ModelError
from searchcore.models import cache_entries, tokenizer
from searchcore.models.preprocess import normalise, preprocess

if TYPE_CHECKING:
    from searchcore.models.gpu_decode import DeviceDecoder

log = logging.getLogger(__name__)
T = TypeVar("T")

CONTEXT_LENGTH = tokenizer.CONTEXT_LENGTH
OFFICIAL_MODELS = ("RN50", "ViT-B-16", "ViT-L-14", "ViT-L-14-336", "ViT-H-14")


@dataclass(frozen=True)
class ModelSpec:
    """What was loaded: an identity recorded with each library, plus its shape."""

    name: str
    dim: int
    resolution: int
    digest: str
    source: str = ""  # the weights file it was loaded from


def _no_nvidia_driver() -> bool:
    """True when this is Linux with no NVIDIA driver loaded: torch could not see a GPU either."""
    return sys.platform.startswith("linux") and not Path("/proc/driver/nvidia/version").exists()


def resolve_device(device: str) -> str:
    """auto → cuda when available, else cpu."""
    if device != "cuda" and _no_nvidia_driver():
        return "cpu"  # answered without importing torch (2 s), which the OpenVINO path may not need
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("cuda_unavailable")
    return device


def resolve_precision(precision: str, device: str) -> str:
    """auto → fp16 on CUDA; on a CPU auto stays auto, which the runtime decides per tower.

    On a CPU with native bf16 (avx512_bf16 or AMX), OpenVINO runs auto's image tower in bf16 behind the probe
    guard and its text tower in f32; elsewhere, and on the PyTorch runtime (the reference), both towers are f32.
    bf16 moves only near-ties: judged tie-aware (models/fidelity.py), it is faithful. fp32, bf16 and int8 asked
    for keep their meaning.
    """
    if precision == "auto":
        return "fp16" if device == "cuda" else "auto"
    if precision == "fp16" and device == "cpu":
        raise ConfigError("fp16_needs_cuda")
    if precision == "int8" and device != "cpu":
        raise ConfigError("int8_needs_cpu")
    return precision


def resolve_backend(backend: str, device: str) -> str:
    """auto → OpenVINO on a CPU when it is installed, PyTorch otherwise."""
    if backend == "auto":
        if device != "cpu":
            return "torch"
        # find_spec, not import: openvino/compiled.py must be the first to import openvino (telemetry opt-out).
        return "openvino" if importlib.util.find_spec("openvino") is not None else "torch"
    if backend == "openvino" and device != "cpu":
        raise ConfigError("openvino_needs_cpu")
    return backend


def resolve_gpu_decode(gpu_decode: str, backend: str, device: str) -> bool:
    """Whether JPEGs are decoded on the encoder's device: auto → when the encoder runs on CUDA with PyTorch;
    on → with PyTorch on any device (a CPU: tests and measurements of the same code); off → never."""
    if gpu_decode == "on" and backend != "torch":
        raise ConfigError("gpu_decode_needs_torch")
    return gpu_decode == "on" or (gpu_decode == "auto" and backend == "torch" and device == "cuda")


def tokenize(texts: Sequence[str]) -> np.ndarray:
    """cn_clip's token ids at context length 52 (int64 [n,52]); longer text is truncated."""
    return tokenizer.tokenize(list(texts), CONTEXT_LENGTH)


class EncoderRuntime(Protocol):
    """Runs both towers on model inputs and returns unnormalised float32 features."""

    @property
    def tower_precision(self) -> dict[str, str]:
        """The precision each tower actually runs at, in SEARCHCORE_PRECISION's words."""

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """float32 [n,3,R,R] preprocessed pixels -> float32 [n,dim]."""

    def encode_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """int64 [n,52] token ids -> float32 [n,dim]."""

    def encode_pixel_batches(self, batches: Iterable[tuple[T, np.ndarray]]) -> Iterator[tuple[T, np.ndarray]]:
        """Stream (payload, pixels) -> (payload, features) in input order."""


class Encoder:
    """Encodes images and texts into one normalised vector space: tokenises, preprocesses and normalises
    around a runtime (PyTorch or OpenVINO) that runs the towers."""

    def __init__(self, runtime: EncoderRuntime, spec: ModelSpec, *, device: str, precision: str,
                 backend: str, device_decoder: DeviceDecoder | None = None) -> None:
        self.runtime_impl = runtime
        self.device_decoder = device_decoder  # decodes ingest's JPEGs on the device (the CUDA path), when set
        self.spec = spec
        self.device = device
        self.precision = precision
        self.backend = backend
        log.info("encoder %s: dim %d, %s on %s, %s asked", spec.name, spec.dim, backend, device, precision)

    @property
    def name(self) -> str:
        """The model identity recorded with each library."""
        return self.spec.name

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self.spec.dim

    @property
    def resolution(self) -> int:
        """Image input resolution."""
        return self.spec.resolution

    def runtime(self) -> dict[str, Any]:
        """How this encoder runs: backend, device, and the precision each tower actually runs at."""
        return {"backend": self.backend, "device": self.device, "precision": dict(self.runtime_impl.tower_precision)}

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """One decoded image → its [3,R,R] model input."""
        return preprocess(image, self.spec.resolution)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Decoded images → normalised float32 [n, dim]."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_pixels(np.stack([self.preprocess(image) for image in images]))

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Preprocessed [n,3,R,R] inputs → normalised float32 [n, dim]."""
        return normalise(self.runtime_impl.encode_pixels(pixels))

    def encode_pixel_batches(self, batches: Iterable[tuple[T, np.ndarray]]) -> Iterator[tuple[T, np.ndarray]]:
        """Stream (payload, pixels) batches → (payload, vectors) in input order."""
        for payload, features in self.runtime_impl.encode_pixel_batches(batches):
            yield payload, normalise(features)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts → normalised float32 [n, dim]."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalise(self.runtime_impl.encode_tokens(tokenize(texts)))


def load_encoder(settings: Settings) -> Encoder:
    """Build the encoder the settings describe (model, device, precision, backend).

    On the OpenVINO path, weights seen before (same file, size and mtime) are not loaded at all: their
    spec comes from a small index in the model folder and the towers from the cached IR, so neither
    torch nor cn_clip is imported. The torch model is loaded only if the IR must be (re)built.
    """
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    backend = resolve_backend(settings.backend, device)
    on_device = resolve_gpu_decode(settings.gpu_decode, backend, device)
    model_dir = Path(settings.model_dir).expanduser()
    runtime: EncoderRuntime
    if precision == "int8" and backend != "openvino":
        raise ConfigError("int8_needs_openvino")
    if backend == "openvino":
        from searchcore.models.openvino.towers import (
            OpenVINOTowers,  # imports openvino: only when that runtime is built
        )

        index = _SpecIndex(model_dir)
        spec = index.get(settings)
        model = None
        if spec is None:
            model, spec = _load_eval_model(settings)
            index.put(settings, spec)
        # auto shares bf16's cache entry: the same IR, and probe verdicts are kept per tower and precision.
        entry = "bf16" if precision == "auto" else precision
        runtime = OpenVINOTowers(model, loader=lambda: _load_eval_model(settings)[0], resolution=spec.resolution,
                                 precision=precision, cache_dir=model_dir / "openvino",
                                 cache_key=f"{spec.digest[:16]}-{spec.name.replace('/', '_')}-{spec.resolution}"
                                           f"-{entry}", context_length=CONTEXT_LENGTH)
    else:
        from searchcore.models.torch_runtime import TorchRuntime

        model, spec = _load_eval_model(settings)
        runtime = TorchRuntime(model, device=device, precision="fp32" if precision == "auto" else precision)
    decoder = None
    if on_device:
        from searchcore.models.gpu_decode import DeviceDecoder

        decoder = DeviceDecoder(spec.resolution, device)
    return Encoder(runtime, spec, device=device, precision=precision, backend=backend, device_decoder=decoder)


def _load_eval_model(settings: Settings) -> tuple[Any, ModelSpec]:
    model, spec = load_model(settings)
    return model.eval(), spec


class _SpecIndex:
    """Specs of weights files loaded before, keyed by the model settings and checked by the file's stat."""

    def __init__(self, model_dir: Path) -> None:
        self.path = model_dir / "openvino" / "specs.json"

    @staticmethod
    def _key(settings: Settings) -> str:
        return json.dumps([settings.model, settings.vision_model, settings.text_model, settings.resolution])

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, settings: Settings) -> ModelSpec | None:
        """The spec recorded for these settings, if its weights file is unchanged since."""
        entry = self._read().get(self._key(settings))
        if not isinstance(entry, dict):
            return None
        try:
            spec = ModelSpec(**entry["spec"])
            if cache_entries.stamp(Path(spec.source)) != entry["stamp"]:
                return None
        except (OSError, KeyError, TypeError, ValueError):
            return None
        return spec

    def put(self, settings: Settings, spec: ModelSpec) -> None:
        """Record a loaded spec (best effort: an unwritable model folder just keeps no index)."""
        if not spec.source:
            return
        record = {"spec": dataclasses.asdict(spec), "stamp": cache_entries.stamp(Path(spec.source))}
        cache_entries.update_json(self.path, lambda data: data.update({self._key(settings): record}), create=True)


def load_model(settings: Settings) -> tuple[Any, ModelSpec]:
    """Load the cn_clip torch model in fp32 on the CPU, with its spec."""
    name = settings.model
    try:
        if name in OFFICIAL_MODELS:
            return _load_official(name, Path(settings.model_dir).expanduser())
        path = Path(name).expanduser()
        if not path.is_file():
            raise ModelError("model_unknown", name=name, models=", ".join(OFFICIAL_MODELS))
        return _load_checkpoint(path, settings)
    except ModelError:
        raise
    except Exception as exc:  # torch/cn_clip raise many kinds; the user needs one clear message
        raise ModelError("model_load_failed", name=name, reason=str(exc)) from exc


def _load_official(name: str, model_dir: Path) -> tuple[Any, ModelSpec]:
    from cn_clip.clip import load_from_name
    from cn_clip.clip.utils import _MODEL_INFO, _MODELS

    target = model_dir / _MODELS[name][1]
    if not target.is_file():
        log.info("%s not in %s; cn_clip will download it", name, model_dir)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model, _ = load_from_name(name, device="cpu", download_root=str(model_dir))
    except Exception as exc:
        if not target.is_file():
            raise ModelError("model_weights_missing", name=name, model_dir=model_dir, reason=str(exc),
                             file=_MODELS[name][1]) from exc
        raise
    resolution = int(_MODEL_INFO[name]["input_resolution"])
    spec = ModelSpec(name, _embed_dim(model), resolution, cache_entries.sha256(target), str(target.resolve()))
    return model.float(), spec


def _load_checkpoint(path: Path, settings: Settings) -> tuple[Any, ModelSpec]:
    import torch

    digest = cache_entries.sha256(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ModelError("checkpoint_no_state_dict", path=path)
    ident = f"{path.stem}@{digest[:12]}"
    if "model_config" in checkpoint:
        from cn_clip.clip.model import CLIP

        config = dict(checkpoint["model_config"])
        model = CLIP(**config)
        state = {k.removeprefix("module."): v.float() if v.is_floating_point() else v
                 for k, v in checkpoint["state_dict"].items() if "bert.pooler" not in k}
        model.load_state_dict(state)
        model.float()
        return model, ModelSpec(ident, int(config["embed_dim"]), int(config["image_resolution"]), digest,
                                str(path.resolve()))
    if not (settings.vision_model and settings.text_model and settings.resolution):
        raise ModelError("checkpoint_fine_tuned", path=path)
    from cn_clip.clip import load_from_name

    with contextlib.redirect_stdout(io.StringIO()):
        model, _ = load_from_name(str(path), device="cpu", vision_model_name=settings.vision_model,
                                  text_model_name=settings.text_model, input_resolution=settings.resolution)
    ident = f"{settings.vision_model}@{settings.text_model}:{ident}"
    return model.float(), ModelSpec(ident, _embed_dim(model), settings.resolution, digest, str(path.resolve()))


def _embed_dim(model: Any) -> int:
    return int(model.text_projection.shape[1])


def recorded_model(settings: Settings, name: str, model_file: str, resolution: int | None = None) -> Settings | None:
    """The settings that load the model a library recorded (its name, and the weights file it came from), or
    None when they cannot be known (an older library's checkpoint recorded no file). An official model loads
    only from weights already in the model folder: a search never starts a download."""
    if name in OFFICIAL_MODELS:
        from cn_clip.clip.utils import _MODELS

        present = (Path(settings.model_dir).expanduser() / _MODELS[name][1]).is_file()
        return settings.replace(model=name, vision_model=None, text_model=None) if present else None
    if not model_file:
        return None
    changes: dict[str, Any] = {"model": model_file}
    vision, sep, rest = name.partition("@")
    if sep and ":" in rest:  # a fine-tuned checkpoint: "{vision}@{text}:{stem}@{digest}"
        changes.update(vision_model=vision, text_model=rest.split(":", 1)[0], resolution=resolution)
    return dataclasses.replace(settings, **changes)
