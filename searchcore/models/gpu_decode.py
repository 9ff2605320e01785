"""JPEG decoding and preprocessing on a torch device (the CUDA path): batches of JPEG bytes → model inputs.

torchvision.io.decode_jpeg decodes a batch on the device (nvJPEG on CUDA; libjpeg-turbo on a CPU, where the
tests run this same code). Each picture is then resized and normalised there as encoder.preprocess does it
with Pillow: a squash to R×R by Pillow's bicubic (a = -0.5, support widened by the scale: torch's antialiased
bicubic), width then height, rounded to 8 bits after each pass, then scaled and normalised. A picture the
decoder refuses comes back None, and its caller takes the CPU path for it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from searchcore.models.preprocess import MEAN, STD

log = logging.getLogger(__name__)


class DeviceDecoder:
    """Decodes JPEGs on one torch device and turns them into the model's [3,R,R] float32 inputs there."""

    def __init__(self, resolution: int, device: str) -> None:
        import torch

        self.resolution = resolution
        self.device = device
        self.mean = torch.from_numpy(MEAN).to(device)
        self.std = torch.from_numpy(STD).to(device)
        self.refused = 0  # pictures the decoder refused since this decoder was built (each went to the CPU)
        self.warned = False  # the first batch it refused is logged as a warning, the rest at debug level

    def model_inputs(self, jpegs: Sequence[bytes]) -> list[Any | None]:
        """Each JPEG's [3,R,R] float32 model input on the device, or None where the decoder refused it."""
        if not jpegs:
            return []
        import torch

        encoded = [torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy()) for data in jpegs]
        try:
            decoded: list[Any | None] = list(self._decode(encoded))
        except RuntimeError as exc:  # one picture refused fails the whole batch: find it by decoding one at a time
            if not self.warned:
                self.warned = True
                log.warning("the device decoder refused a batch (%s); each picture it refuses takes the CPU path",
                            str(exc).splitlines()[-1] if str(exc) else type(exc).__name__)
            decoded = [self._decode_one(data) for data in encoded]
        refused = sum(image is None for image in decoded)
        if refused:
            self.refused += refused
            log.debug("device decoder refused %d of %d pictures; they take the CPU path", refused, len(jpegs))
        return [None if image is None else self.preprocess(image) for image in decoded]

    def preprocess(self, image: Any) -> Any:
        """One decoded uint8 [3,H,W] picture on the device → its normalised float32 [3,R,R] model input."""
        import torch.nn.functional as F

        side = self.resolution
        pixels = image.unsqueeze(0).float()
        for size in ((pixels.shape[2], side), (side, side)):  # Pillow's order: the width, then the height
            if tuple(pixels.shape[2:]) != size:
                pixels = F.interpolate(pixels, size=size, mode="bicubic", antialias=True, align_corners=False)
                pixels = pixels.clamp_(0, 255).round_()
        return (pixels[0] * (1 / 255) - self.mean) / self.std

    def stack(self, rows: Sequence[Any]) -> Any:
        """Model inputs (device tensors, or numpy arrays from the CPU path) → one float32 [n,3,R,R] batch on the
        device, in order."""
        import torch

        return torch.stack([torch.from_numpy(row).to(self.device) if isinstance(row, np.ndarray) else row
                            for row in rows])

    def _decode(self, encoded: list[Any]) -> list[Any]:
        from torchvision.io import ImageReadMode, decode_jpeg

        with warnings.catch_warnings():
            # torchvision 0.29 deprecates its image decoding for TorchCodec's; decode_jpeg still works there
            warnings.simplefilter("ignore", DeprecationWarning)
            return list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device))

    def _decode_one(self, encoded: Any) -> Any | None:
        try:
            return self._decode([encoded])[0]
        except RuntimeError:
            return None
