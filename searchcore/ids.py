"""Image ids: the range every store accepts (Milvus INT64 primary keys), and ids in batches for one call."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

MAX_ID = (1 << 63) - 1
DIGITS = re.compile(r"[0-9]{1,19}")  # an id as text: decimal digits only (no sign, point or underscore)


def parse_image_id(raw: str | bytes) -> int:
    """An id written as a whole number from 0 to MAX_ID (surrounding white space ignored), or ValueError."""
    text = (raw.decode(errors="replace") if isinstance(raw, bytes) else raw).strip()
    if not DIGITS.fullmatch(text) or int(text) > MAX_ID:
        raise ValueError(f"image id {text[:40]!r} is not a whole number from 0 to {MAX_ID}")
    return int(text)


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """The items in lists of at most `size`, in order; reads an iterator only as far as each list needs."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def id_chunks(ids: Iterable[Any], size: int) -> Iterator[list[int]]:
    """Image ids as ints, in lists of at most size (for SQL IN lists and Milvus filters)."""
    return chunks((int(i) for i in ids), size)
