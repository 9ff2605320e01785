"""The CUDA fp16 conversion, checked on the CPU (CI has no GPU): cn_clip's ViT LayerNorms keep fp32 weights.

On an H100 the earlier blanket `model.half()` made every ViT model fail with "expected scalar type Float but
found Half" (docs/PERFORMANCE.md, GPU); the tiny model is a ViT, so the same failure shows here on the CPU.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from searchcore.models.encoder import Encoder
from searchcore.models.torch_runtime import to_fp16


def test_fp16_conversion_keeps_layernorm_in_fp32_and_runs(torch_encoder: Encoder) -> None:
    model = copy.deepcopy(torch_encoder.runtime_impl.model)  # type: ignore[attr-defined]
    to_fp16(model)
    assert model.visual.conv1.weight.dtype == torch.float16
    assert model.visual.ln_pre.weight.dtype == torch.float32
    pixels = torch.from_numpy(np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32))
    with torch.inference_mode():
        half = model.encode_image(pixels.half()).float()
        full = torch_encoder.runtime_impl.model.encode_image(pixels).float()  # type: ignore[attr-defined]
    cosine = torch.nn.functional.cosine_similarity(half, full).min().item()
    assert cosine > 0.999


def test_blanket_half_is_what_broke(torch_encoder: Encoder) -> None:
    model = copy.deepcopy(torch_encoder.runtime_impl.model)  # type: ignore[attr-defined]
    model.half()
    with pytest.raises(RuntimeError, match="Half|Float"), torch.inference_mode():
        model.encode_image(torch.zeros((1, 3, 64, 64), dtype=torch.float16))
