"""Cache folders that are built in a temp folder, published with one rename and checked by sha256.

The OpenVINO IR cache and the int8 cache both keep their entries this way, so a crash mid-build never
leaves a half-written entry where a later run would read it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

STALE_TMP_S = 3600.0  # a temp folder this old was left by a crashed build


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def stamp(path: Path) -> list[int]:
    """What changes when a file is rewritten or replaced: size, mtime, ctime and inode."""
    info = path.stat()
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


def update_json(path: Path, change: Callable[[dict[str, Any]], object], *, create: bool = False) -> None:
    """Apply a change to a JSON object file and replace it atomically (best effort: a failure is logged).

    create: a missing or unreadable file starts as {}; otherwise it is left alone.
    """
    tmp = path.with_name(f".{path.stem}-{uuid.uuid4().hex[:8]}.json")
    try:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            if not create:
                raise
            data = {}
        if not isinstance(data, dict):
            raise ValueError(f"{path} does not hold a JSON object")
        change(data)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except (OSError, ValueError) as exc:
        logger.info("could not update %s: %s", path, exc)
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def building(entry: Path) -> Iterator[Path]:
    """A fresh temp folder beside entry, removed afterwards; call publish(tmp, entry) inside when it is complete."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for leftover in entry.parent.glob(f".*-{entry.name}-*"):
        with contextlib.suppress(OSError):
            if now - leftover.stat().st_mtime > STALE_TMP_S:
                shutil.rmtree(leftover, ignore_errors=True)
    tmp = entry.with_name(f".tmp-{entry.name}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def describe(folder: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Size and sha256 of each named file, as a manifest records them."""
    return {name: {"size": (folder / name).stat().st_size, "sha256": sha256(folder / name)} for name in names}


def publish(tmp: Path, entry: Path) -> None:
    """Atomically move a complete temp folder into place, replacing a stale entry."""
    stale: Path | None = None
    if entry.exists():
        stale = entry.with_name(f".stale-{entry.name}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(entry, stale)
        except FileNotFoundError:
            stale = None
    try:
        os.rename(tmp, entry)
    except OSError:
        if not entry.is_dir():
            raise
        logger.info("another process published %s first; using it", entry)  # verified on read
    if stale is not None:
        shutil.rmtree(stale, ignore_errors=True)
