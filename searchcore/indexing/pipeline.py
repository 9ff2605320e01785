"""The one decode → preprocess → batch pipeline: ingest, extract, predict (through ingest) and repair use it.

Untrusted image bytes are decoded and preprocessed in a thread pool with a bounded look-ahead, kept in input
order, and grouped into batches of model inputs ready for `Encoder.encode_pixel_batches`. With a device decoder
(the CUDA path), the pool only checks each JPEG's header, and the batch is decoded and preprocessed on the device.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from searchcore.errors import ImageDecodeError
from searchcore.ids import ordered_map
from searchcore.models.encoder import Encoder
from searchcore.models.gpu_decode import DeviceDecoder
from searchcore.sources.imaging import DecodedImage, decode_image

P = TypeVar("P")


@dataclass
class Prepared(Generic[P]):
    """One item whose image decoded: what it came with, the checked image, and its model input (or None)."""

    item: P
    decoded: DecodedImage
    pixels: np.ndarray | None


def prepared_batches(items: Iterable[P], data: Callable[[P], bytes], encoder: Encoder | None, *,
                     on_bad: Callable[[P, ImageDecodeError], None], batch_size: int = 8, workers: int = 0,
                     max_bytes: int | None = None, thumbnails: bool = False,
                     digest: Callable[[P], str | None] | None = None,
                     picture: Callable[[P], DecodedImage | None] | None = None, device_decode: bool = False
                     ) -> Iterator[tuple[list[Prepared[P]], np.ndarray]]:
    """Decode and preprocess items in a pool; yield (batch, stacked pixels) in input order.

    An image that cannot be decoded goes to on_bad(item, reason) and is left out. With no encoder, nothing is
    preprocessed and the pixels are an empty [n,0] array (feature files bring their own vectors). With
    thumbnails, each decoded image carries a thumbnail to store instead of its bytes; digest gives an item's
    sha256 when it is known already; picture gives an item that is decoded already (a video's sampled frame)
    its decoded image, which passes straight through. With device_decode and an encoder that has a device
    decoder, the JPEGs whose stored bytes are their own are decoded on its device, and the pixels are a torch
    tensor there (a picture it refuses takes the CPU path, which decides whether it is bad).
    """

    target = encoder.resolution if encoder is not None else None
    decoder = encoder.device_decoder if encoder is not None and device_decode and not thumbnails else None

    def prepare(item: P, defer: bool = decoder is not None) -> Prepared[P] | ImageDecodeError:
        try:
            decoded = picture(item) if picture is not None else None
            if decoded is None:
                decoded = decode_image(data(item), max_bytes, target, digest(item) if digest is not None else None,
                                       thumbnail=thumbnails, defer=defer)
        except ImageDecodeError as exc:
            return exc
        pixels = encoder.preprocess(decoded.image) if encoder is not None and not decoded.deferred else None
        return Prepared(item, decoded, pixels)

    def finished(batch: list[Prepared[P]]) -> Iterator[tuple[list[Prepared[P]], np.ndarray]]:
        if decoder is None:
            yield batch, _stack(batch)
            return
        kept, rows = _on_device(batch, decoder, lambda item: prepare(item, False), on_bad)
        if kept:
            yield kept, decoder.stack(rows)

    workers = workers or os.cpu_count() or 2
    batch: list[Prepared[P]] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        for item, result in ordered_map(pool, prepare, iter(items), max(2 * batch_size * workers, 16)):
            if isinstance(result, ImageDecodeError):
                on_bad(item, result)
                continue
            batch.append(result)
            if len(batch) == batch_size:
                yield from finished(batch)
                batch = []
    if batch:
        yield from finished(batch)


def _on_device(batch: list[Prepared[P]], decoder: DeviceDecoder,
               on_cpu: Callable[[P], Prepared[P] | ImageDecodeError],
               on_bad: Callable[[P, ImageDecodeError], None]) -> tuple[list[Prepared[P]], list[Any]]:
    """Decode a batch's deferred pictures on the device; each one it refuses goes the CPU way (on_cpu), and one
    that is bad there too to on_bad. The batch that is left, and each one's model input, in order."""
    on_device = iter(decoder.model_inputs([p.decoded.data for p in batch if p.decoded.deferred]))
    kept: list[Prepared[P]] = []
    rows: list[Any] = []
    for prepared in batch:
        row = next(on_device) if prepared.decoded.deferred else prepared.pixels
        if row is None:
            again = on_cpu(prepared.item)
            if isinstance(again, ImageDecodeError):
                on_bad(prepared.item, again)
                continue
            prepared, row = again, again.pixels
        kept.append(prepared)
        rows.append(row)
    return kept, rows


def _stack(batch: list[Prepared[P]]) -> np.ndarray:
    if batch[0].pixels is None:
        return np.zeros((len(batch), 0), dtype=np.float32)
    return np.stack([p.pixels for p in batch])  # type: ignore[misc]
