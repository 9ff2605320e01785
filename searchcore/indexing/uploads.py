"""Uploaded pictures: the limits on an upload, and a batch of uploads ingested into a library.

The UI's Build tab and search by image use it, and so can any other front end: the policy (how many files,
how large, which names count as pictures) lives here, not in one front end.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from searchcore.errors import RecordError, UploadRefused
from searchcore.indexing.report import IngestReport
from searchcore.records import BadRecord
from searchcore.sources.datasets import IMAGE_SUFFIXES, is_picture

MAX_UPLOAD_BYTES = 20 * 2**20
MAX_UPLOAD_FILES = 200


def read_upload(path: Path) -> bytes:
    """An uploaded file's bytes, or UploadRefused when it is over MAX_UPLOAD_BYTES or cannot be read."""
    mb = MAX_UPLOAD_BYTES // 2**20
    try:
        if path.stat().st_size > MAX_UPLOAD_BYTES:
            raise UploadRefused("upload_too_big", name=path.name, limit_mb=mb)
        return path.read_bytes()
    except OSError as exc:
        raise UploadRefused("upload_unreadable", name=path.name, reason=exc.strerror) from None


def ingest_uploads(uploads: Sequence[str | Path], ingest_folder: Callable[[Path], IngestReport]) -> IngestReport:
    """Copy uploaded files into a temporary folder and ingest it with ingest_folder (the engine's, which records
    no file of it); bad records name the uploaded files, and a file whose name is not a picture's is reported
    bad (not_image_name) rather than read."""
    if not uploads:
        raise UploadRefused("upload_none")
    if len(uploads) > MAX_UPLOAD_FILES:
        raise UploadRefused("upload_too_many", count=len(uploads), limit=MAX_UPLOAD_FILES)
    # A folder of its own per call, so concurrent uploads never see each other's files.
    with tempfile.TemporaryDirectory(prefix="searchcore-upload-") as tmp:
        names = {}
        for number, upload in enumerate(uploads, 1):
            original = Path(upload)
            suffix = original.suffix.lower()
            copy = f"{number:04d}{suffix if is_picture(suffix) else '.img'}"
            (Path(tmp) / copy).write_bytes(read_upload(original))
            names[copy] = original.name
        report = ingest_folder(Path(tmp))
    for bad in report.bad:
        bad.file = names.get(bad.file, bad.file)
    report.bad += [BadRecord(0, RecordError("not_image_name", suffixes=", ".join(IMAGE_SUFFIXES)), name)
                   for copy, name in names.items() if copy.endswith(".img")]
    return report
