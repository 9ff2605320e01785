"""The PyTorch runtime of both towers: the reference path on a CPU, and the GPU path (fp16 on CUDA)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
_NAMES = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16"}


class TorchRuntime:
    """A cn_clip torch model on one device, in fp32, bf16 (CPU autocast) or fp16 (CUDA)."""

    def __init__(self, model: Any, *, device: str, precision: str) -> None:
        import torch

        self.model = model
        self.device = device
        self.precision = precision
        if device == "cpu" and precision == "bf16":
            model.visual.to(memory_format=torch.channels_last)
        elif device == "cuda":
            model.to("cuda")
            model.float()
            if precision == "fp16":
                to_fp16(model)
        self.tower_precision = {"image": _NAMES[precision], "text": _NAMES[precision]}

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """float32 [n,3,R,R] preprocessed pixels (numpy, or a torch tensor from gpu_decode) -> float32 [n,dim]
        unnormalised image features."""
        import torch

        with torch.inference_mode(), self._autocast(self.precision):
            if isinstance(pixels, torch.Tensor):
                batch = pixels.to(self.device, torch.float32)
            else:
                batch = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).to(self.device)
            if self.device == "cpu" and self.precision == "bf16":
                batch = batch.contiguous(memory_format=torch.channels_last)
            elif self.precision == "fp16":
                batch = batch.half()
            out = self.model.encode_image(batch)
        return out.float().cpu().numpy()

    def encode_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """int64 [n,L] token ids -> float32 [n,dim] unnormalised text features."""
        import torch

        with torch.inference_mode(), self._autocast(self.precision):
            out = self.model.encode_text(torch.from_numpy(np.ascontiguousarray(tokens)).to(self.device))
        return out.float().cpu().numpy()

    def encode_pixel_batches(self, batches: Iterable[tuple[T, np.ndarray]]) -> Iterator[tuple[T, np.ndarray]]:
        """(payload, pixels) -> (payload, features), one batch at a time, in order."""
        for payload, pixels in batches:
            yield payload, self.encode_pixels(pixels)

    def _autocast(self, precision: str) -> Any:
        import torch

        if self.device == "cpu" and precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def to_fp16(model: Any) -> None:
    """cn_clip's own fp16 conversion: its LayerNorms compute in fp32 and need fp32 weights, which a blanket
    model.half() would break on the ViT models ("expected scalar type Float but found Half")."""
    from cn_clip.clip.model import convert_weights

    convert_weights(model)
