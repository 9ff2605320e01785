"""Image ids: the range every store accepts (Milvus INT64 primary keys), ids in batches for one call, and the
ordered, bounded map that the reader and the decoder run their pools with."""

from __future__ import annotations

import itertools
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

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


def ordered_map(pool: Executor, fn: Callable[[T], R], items: Iterator[T], ahead: int) -> Iterator[tuple[T, R]]:
    """pool.map that keeps at most `ahead` items in flight and yields (item, result) in input order."""
    pending: deque[tuple[T, Future[R]]] = deque()
    for item in items:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= ahead:
            head, future = pending.popleft()
            yield head, future.result()
    while pending:
        head, future = pending.popleft()
        yield head, future.result()
