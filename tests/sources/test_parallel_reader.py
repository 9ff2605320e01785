"""The parallel reader (base64 decoding and hashing in worker processes) gives exactly what the serial one gives:
the same records in the same order, with the same reasons for the broken ones, from a tsv file and from LMDB."""

from __future__ import annotations

import base64
import hashlib
import io
import random
from pathlib import Path

import pytest

from demo.shapes import CLASSES, draw
from searchcore.engine import Engine
from searchcore.models.encoder import Encoder
from searchcore.records import Record
from searchcore.sources.chinese_clip import lmdb_dir, lmdb_records, read_captions, tsv_file, tsv_records
from tests.support import tiny_settings


def fields(records: list[Record]) -> list[tuple]:
    return [(r.line, r.file, r.image_id, r.data, r.error, r.captions, r.sha256) for r in records]


@pytest.fixture(scope="module")
def broken_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tsv split of 40 pictures with, among them, every kind of line the reader refuses, and blank lines."""
    root = tmp_path_factory.mktemp("broken")
    lines = []
    for n in range(40):
        buffer = io.BytesIO()
        draw(*CLASSES[n % len(CLASSES)], random.Random(n), (40, 40)).save(buffer, format="PNG")
        encode = base64.urlsafe_b64encode if n % 3 else base64.b64encode
        lines.append(f"{700 + n}\t{encode(buffer.getvalue()).decode()}")
    lines[4] = "704\tnot*base64!"
    lines[9] = "709\tQUJD"[:-1]  # incorrect padding
    lines[14] = "a line with no tab"
    lines[19] = "twenty\t" + base64.b64encode(b"x").decode()  # an id that is not a number
    lines[24] = "724\t" + base64.b64encode(b"not an image").decode()  # valid base64; the decoder refuses it
    lines.insert(30, "")
    (root / "valid_imgs.tsv").write_text("\n".join(lines) + "\n\n")
    (root / "valid_texts.jsonl").write_text('{"text_id": 1, "text": "红色的圆形", "image_ids": [700, 706]}\n')
    return root


def test_tsv_records_are_the_same_read_in_processes(dataset: Path, broken_split: Path) -> None:
    for root in (dataset, broken_split):
        captions, _ = read_captions(root, "valid")
        path = tsv_file(root, "valid")
        serial = list(tsv_records(path, captions, workers=1))
        parallel = list(tsv_records(path, captions, workers=2, min_bytes=0))
        assert fields(parallel) == fields(serial)
        assert any(r.captions for r in parallel)
    bad = [(r.line, str(r.error)) for r in serial if r.error is not None]
    assert [line for line, _ in bad] == [5, 10, 15, 20]
    assert all(r.sha256 == hashlib.sha256(r.data).hexdigest() for r in serial if r.data is not None)


def test_lmdb_records_are_the_same_read_in_processes(dataset: Path) -> None:
    captions, _ = read_captions(dataset, "valid")
    total, serial = lmdb_records(lmdb_dir(dataset, "valid"), captions, workers=1)
    _, parallel = lmdb_records(lmdb_dir(dataset, "valid"), captions, workers=2, min_bytes=0)
    serial_records = list(serial)
    assert total == len(serial_records) == 90
    assert fields(list(parallel)) == fields(serial_records)


def test_ingest_reports_the_same_with_reader_processes(broken_split: Path, torch_encoder: Encoder, model_cache: Path,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reports = []
    for workers in (1, 2):
        monkeypatch.setattr("searchcore.sources.chinese_clip.PARALLEL_MIN_BYTES", 0)
        settings = tiny_settings(tmp_path / str(workers), model_cache, backend="torch", precision="fp32",
                                 workers=workers)
        engine = Engine(settings, encoder=torch_encoder)
        try:
            reports.append(engine.ingest(broken_split, split="valid"))
            stored = sorted(engine.images.ids("default"))
        finally:
            engine.close()
        assert len(stored) == reports[-1].added
    serial, parallel = reports
    assert (parallel.added, parallel.present, parallel.bad) == (serial.added, serial.present, serial.bad)
    assert [b.line for b in serial.bad] == [5, 10, 15, 20, 25]
