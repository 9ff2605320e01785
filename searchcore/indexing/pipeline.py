"""The one decode → preprocess → batch pipeline: ingest, extract, predict (through ingest) and repair use it.

Untrusted image bytes are decoded and preprocessed in a thread pool with a bounded look-ahead, kept in input
order, and grouped into batches of model inputs ready for `Encoder.encode_pixel_batches`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from searchcore.ids import ordered_map
from searchcore.models.encoder import Encoder
from searchcore.sources.imaging import DecodedImage, ImageDecodeError, decode_image

P = TypeVar("P")


@dataclass
class Prepared(Generic[P]):
    """One item whose image decoded: what it came with, the checked image, and its model input (or None)."""

    item: P
    decoded: DecodedImage
    pixels: np.ndarray | None


def prepared_batches(items: Iterable[P], data: Callable[[P], bytes], encoder: Encoder | None, *,
                     on_bad: Callable[[P, str], None], batch_size: int = 8, workers: int = 0,
                     max_bytes: int | None = None, thumbnails: bool = False,
                     digest: Callable[[P], str | None] | None = None,
                     picture: Callable[[P], DecodedImage | None] | None = None
                     ) -> Iterator[tuple[list[Prepared[P]], np.ndarray]]:
    """Decode and preprocess items in a pool; yield (batch, stacked pixels) in input order.

    An image that cannot be decoded goes to on_bad(item, reason) and is left out. With no encoder, nothing is
    preprocessed and the pixels are an empty [n,0] array (feature files bring their own vectors). With
    thumbnails, each decoded image carries a thumbnail to store instead of its bytes; digest gives an item's
    sha256 when it is known already; picture gives an item that is decoded already (a video's sampled frame)
    its decoded image, which passes straight through.
    """

    target = encoder.resolution if encoder is not None else None

    def prepare(item: P) -> Prepared[P] | str:
        try:
            decoded = picture(item) if picture is not None else None
            if decoded is None:
                decoded = decode_image(data(item), max_bytes, target, digest(item) if digest is not None else None,
                                       thumbnail=thumbnails)
        except ImageDecodeError as exc:
            return str(exc)
        return Prepared(item, decoded, encoder.preprocess(decoded.image) if encoder is not None else None)

    workers = workers or os.cpu_count() or 2
    batch: list[Prepared[P]] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        for item, result in ordered_map(pool, prepare, iter(items), max(2 * batch_size * workers, 16)):
            if isinstance(result, str):
                on_bad(item, result)
                continue
            batch.append(result)
            if len(batch) == batch_size:
                yield batch, _stack(batch)
                batch = []
    if batch:
        yield batch, _stack(batch)


def _stack(batch: list[Prepared[P]]) -> np.ndarray:
    if batch[0].pixels is None:
        return np.zeros((len(batch), 0), dtype=np.float32)
    return np.stack([p.pixels for p in batch])  # type: ignore[misc]
