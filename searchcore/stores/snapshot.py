"""A library's exact copy saved beside its Milvus Lite folder, so a one-question process (`searchcore search`)
answers without starting Milvus Lite or loading the collection.

The last store of a process on a Lite folder saves the copies it holds when it closes, after Lite has released
the folder, stamped with the folder's files (path, size, mtime, inode of each). A reader uses a snapshot only
when nobody holds the folder's lock (so no writer is half-way) and the folder's stamp is the recorded one;
anything else, a write by any program or version included, changes the stamp, and the reader goes to Lite.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from searchcore.stores.exact_copy import ExactCopy

log = logging.getLogger(__name__)

FORMAT = 1
SUFFIX = ".snapshots"  # the folder beside the Lite folder: <lite>.snapshots/<library>.snap
MAGIC = b"SCSNAP01"
LOCK = "LOCK"  # Milvus Lite's lock file inside its folder
_ALIGN = 64


@dataclass(frozen=True)
class Snapshot:
    """A library as saved: what its collection records (model, dim, index, filterable), whether a keyword
    index stood beside it, and its exact copy."""

    library: str
    meta: dict[str, Any]
    text_index: bool
    copy: ExactCopy


def folder_of(uri: str) -> Path:
    """The snapshots folder of a Lite folder."""
    lite = Path(uri).expanduser()
    return lite.with_name(lite.name + SUFFIX)


def lite_locked(lite: Path) -> bool:
    """True when a process holds Milvus Lite's lock on this data folder (another, or this one through a client)."""
    import fcntl

    lock = lite / LOCK
    if not lock.is_file():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def stamp(lite: Path) -> str:
    """A digest of every file in the Lite folder but its lock: relative path, size, mtime and inode."""
    entries = []
    for root, _, files in os.walk(lite):
        for name in files:
            path = Path(root, name)
            if path == lite / LOCK:
                continue
            info = path.stat()
            entries.append((str(path.relative_to(lite)), info.st_size, info.st_mtime_ns, info.st_ino))
    return hashlib.sha256(json.dumps(sorted(entries)).encode()).hexdigest()


def save(uri: str, library: str, meta: dict[str, Any], text_index: bool, copy: ExactCopy) -> bool:
    """Save a library's copy, stamped with the Lite folder as it is now (call it once Lite has let go of the
    folder); False when the snapshot there is already this one or another process took the folder meanwhile."""
    lite = Path(uri).expanduser()
    target = folder_of(uri) / f"{library}.snap"
    now = stamp(lite)
    columns = copy.columns()
    with contextlib.suppress(OSError, ValueError), target.open("rb") as source:
        held, _ = _read(source, body=False)
        if held.get("stamp") == now and held.get("rows") == len(copy) and held.get("format") == FORMAT \
                and set(held.get("columns", {})) == set(columns):  # the same rows, readable by this version
            return False
    header: dict[str, Any] = {"format": FORMAT, "library": library, "meta": meta, "text_index": text_index,
                              "stamp": now, "rows": len(copy), "dim": copy.dim, "columns": {}}
    arrays = []
    offset = 0
    for name, column in columns.items():
        if column.dtype == object:  # paths: text, kept in the header
            header["columns"][name] = {"text": [str(v) for v in column]}
            continue
        data = np.ascontiguousarray(column)
        header["columns"][name] = {"dtype": data.dtype.str, "shape": list(data.shape), "offset": offset}
        arrays.append(data)
        offset += -(-data.nbytes // _ALIGN) * _ALIGN
    head = json.dumps(header).encode()
    start = -(-(16 + len(head)) // _ALIGN) * _ALIGN
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    with partial.open("wb") as out:
        out.write(MAGIC + len(head).to_bytes(8, "little") + head)
        out.write(b"\0" * (start - out.tell()))
        for data in arrays:
            out.write(data.tobytes())
            out.write(b"\0" * (-data.nbytes % _ALIGN))
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, target)
    if lite_locked(lite) or stamp(lite) != now:  # another process opened the folder while this one saved
        discard(uri, library)
        return False
    return True


def load(uri: str, library: str) -> Snapshot | None:
    """The library's snapshot when it is current: Lite's folder unheld and stamped as recorded; else None (a
    stale one is said in the log)."""
    lite = Path(uri).expanduser()
    target = folder_of(uri) / f"{library}.snap"
    if not target.is_file() or not lite.is_dir():
        return None
    try:
        with target.open("rb") as source:  # one open file: a save meanwhile replaces the name, not this file
            header, data = _read(source)
        if header.get("format") != FORMAT or header.get("library") != library:
            raise ValueError(f"format {header.get('format')} for {header.get('library')!r}")
        if lite_locked(lite):
            log.info("the search snapshot of library %s is not used: another process holds %s", library, lite)
            return None
        if header.get("stamp") != stamp(lite):
            log.warning("the search snapshot of library %s is out of date (Milvus Lite changed since it was "
                        "saved); searching through Milvus Lite", library)
            return None
        columns: dict[str, np.ndarray] = {}
        for name, spec in header["columns"].items():
            if "text" in spec:
                columns[name] = np.array(spec["text"], dtype=object).reshape(-1)
                continue
            count = int(np.prod(spec["shape"]))
            columns[name] = np.frombuffer(data, dtype=np.dtype(spec["dtype"]), count=count,
                                          offset=spec["offset"]).reshape(spec["shape"])
        copy = ExactCopy.from_columns(int(header["dim"]), columns)
        if len(copy) != header["rows"]:
            raise ValueError(f"{len(copy)} rows where {header['rows']} were saved")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("the search snapshot of library %s is unreadable (%s); searching through Milvus Lite",
                    library, exc)
        return None
    return Snapshot(library, header["meta"], bool(header["text_index"]), copy)


def discard(uri: str, library: str) -> None:
    """Remove a library's snapshot."""
    with contextlib.suppress(FileNotFoundError):
        (folder_of(uri) / f"{library}.snap").unlink()


def _read(source: Any, body: bool = True) -> tuple[dict[str, Any], bytes]:
    """A snapshot file's header and (with body) the bytes of its arrays."""
    magic, size = source.read(8), int.from_bytes(source.read(8), "little")
    if magic != MAGIC:
        raise ValueError("not a snapshot")
    header = json.loads(source.read(size))
    if not isinstance(header, dict):
        raise ValueError("not a snapshot")
    if not body:
        return header, b""
    source.seek(-(-(16 + size) // _ALIGN) * _ALIGN)
    return header, source.read()
