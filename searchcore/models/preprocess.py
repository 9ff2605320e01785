"""Chinese-CLIP's preprocessing, defined once: the mean and std, pictures to model inputs, L2 normalisation."""

from __future__ import annotations

import numpy as np
from PIL import Image

MEAN = np.array((0.48145466, 0.4578275, 0.40821073), dtype=np.float32).reshape(3, 1, 1)
STD = np.array((0.26862954, 0.26130258, 0.27577711), dtype=np.float32).reshape(3, 1, 1)
# Each channel's 256 model-input values, computed as cn_clip's transform computes them ((v / 255 - mean) / std in
# float32), so that looking them up gives the same bits in one pass instead of four passes over float copies.
_LEVELS = ((np.arange(256, dtype=np.float32) * np.float32(1 / 255))[None, :] - MEAN[:, :, 0]) / STD[:, :, 0]


def resized(image: Image.Image, resolution: int) -> Image.Image:
    """cn_clip's bicubic resize to R×R, in RGB.

    A picture whose shorter side is at least 4R is first box-reduced by whole factors to about 2R (Pillow's
    reducing_gap), several times faster and indistinguishable to the model; smaller ones take the exact resize.
    """
    gap = 2.0 if min(image.size) >= 4 * resolution else None
    small = image.resize((resolution, resolution), Image.Resampling.BICUBIC, reducing_gap=gap)
    return small if small.mode == "RGB" else small.convert("RGB")


def model_input(rgb: np.ndarray) -> np.ndarray:
    """uint8 [R,R,3] RGB → cn_clip's normalised float32 [3,R,R]."""
    pixels = np.empty((3, *rgb.shape[:2]), dtype=np.float32)
    for channel in range(3):
        np.take(_LEVELS[channel], rgb[..., channel], out=pixels[channel])
    return pixels


def preprocess(image: Image.Image, resolution: int) -> np.ndarray:
    """cn_clip's image_transform in numpy: bicubic resize, RGB, scale, normalise → float32 [3,R,R]."""
    return model_input(np.asarray(resized(image, resolution)))


def normalise(features: np.ndarray) -> np.ndarray:
    """L2-normalise rows as float32."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)
