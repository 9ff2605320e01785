"""What a source hands to ingest: records, the records it could not read, and the stream that holds them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Record:
    """One image from a source, or the reason it could not be read."""

    line: int
    file: str
    image_id: int | None = None
    data: bytes | None = None
    error: str | None = None
    captions: list[str] = field(default_factory=list)
    vector: np.ndarray | None = None


@dataclass
class BadRecord:
    """A record ingest skipped, with where it was and why."""

    line: int
    reason: str
    file: str = ""


@dataclass
class Source:
    """A stream of records plus what is known about it up front."""

    kind: str
    path: Path
    split: str | None
    total: int | None
    records: Iterator[Record]
    problems: list[BadRecord] = field(default_factory=list)
