"""Each ingest stage on its own, over the tiny model and the real embedded stores: plan decides without reading
pixels or writing, read decodes without encoding, encode keeps its batch's order, a batch is written images
first, and the runner wires them under IngestOptions."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from demo.shapes import draw
from searchcore.engine import Engine
from searchcore.errors import RecordError
from searchcore.indexing.encode import encode, features
from searchcore.indexing.ingest import IngestOptions, ingest
from searchcore.indexing.plan import Work, plan
from searchcore.indexing.read import Videos, read
from searchcore.indexing.report import IngestReport
from searchcore.indexing.write import write_batch
from searchcore.records import Record, Source

LIBRARY = "stages"


def jpeg(color: str, shape: str, seed: int) -> bytes:
    out = io.BytesIO()
    draw(color, shape, random.Random(seed)).save(out, "JPEG", quality=90)
    return out.getvalue()


RED, BLUE, GREEN = jpeg("红色", "圆形", 1), jpeg("蓝色", "正方形", 2), jpeg("绿色", "三角形", 3)


def record(line: int, image_id: int | None, data: bytes | None) -> Record:
    return Record(line, "stages.tsv", image_id, data, captions=[f"caption {line}"])


@pytest.fixture
def opened(engine: Engine) -> Engine:
    """The engine, its library opened as an ingest opens it (plan and write need it to exist)."""
    encoder = engine.encoder
    engine.vectors.open_library(LIBRARY, encoder.name, encoder.dim, create=True, model_file=encoder.spec.source,
                                digest=encoder.spec.digest)
    return engine


def planned(engine: Engine, records: list[Record], report: IngestReport) -> list[Work]:
    ticks: list[int] = []
    work = list(plan(iter(records), engine.vectors, engine.images, LIBRARY, report, ticks.append))
    assert sum(ticks) == len(records) - len(work), "every record plan decides on its own is counted"
    return work


def read_all(engine: Engine, work: list[Work], report: IngestReport) -> list[tuple[list[Work], Any]]:
    videos = Videos(None, 1.0, True, LIBRARY, report, lambda n: None)
    return list(read(iter(work), engine.encoder, engine.images, videos, folder=False, batch_size=2))


def test_plan_decides_each_record_without_reading_or_writing(opened: Engine) -> None:
    report = IngestReport(LIBRARY)
    work = planned(opened, [record(1, 1, RED), record(2, 2, BLUE), record(3, 1, GREEN), record(4, 4, None),
                            Record(5, "stages.tsv", None, RED)], report)

    assert [(w.record.line, w.store_image) for w in work] == [(1, True), (2, True)]
    assert [(b.line, b.reason.kind, b.reason.params) for b in report.bad if isinstance(b.reason, RecordError)] == [
        (3, "record_duplicate_id", {"image_id": 1, "first_line": 1}),
        (4, "record_no_image_data", {"image_id": 4}),
        (5, "record_no_image_id", {}),
    ]
    assert [str(b.reason) for b in report.bad] == ["duplicate image id 1 with different content from line 1",
                                                   "no image data for image id 4", "no image id"]
    assert work[0].stored is None and work[0].record.data == RED, "plan reads nothing but a digest"
    assert list(opened.images.ids(LIBRARY)) == [] and list(opened.vectors.ids(LIBRARY)) == []


def test_read_decodes_a_batch_without_encoding_and_reports_what_does_not_decode(opened: Engine) -> None:
    report = IngestReport(LIBRARY)
    work = planned(opened, [record(1, 1, RED), record(2, 2, b"not a picture"), record(3, 3, BLUE)], report)
    batches = read_all(opened, work, report)

    items = [w for batch, _ in batches for w in batch]
    assert [w.record.line for w in items] == [1, 3]
    assert [b.line for b in report.bad] == [2] and "not an image" in str(report.bad[0].reason)
    stored = items[0].stored
    assert stored is not None and (stored.image_id, stored.width, stored.height) == (1, 96, 96)
    assert stored.captions == ["caption 1"] and items[0].record.data is None, "the raw bytes are freed"
    side = opened.encoder.spec.resolution
    assert sum(len(pixels) for _, pixels in batches) == 2 and batches[0][1].shape[1:] == (3, side, side)
    assert list(opened.images.ids(LIBRARY)) == [], "reading writes nothing"


def test_encode_gives_each_item_its_own_vector_in_order(opened: Engine) -> None:
    report = IngestReport(LIBRARY)
    ahead = read_all(opened, planned(opened, [record(1, 1, RED), record(2, 2, BLUE)], report), report)
    behind = read_all(opened, planned(opened, [record(1, 2, BLUE), record(2, 1, RED)], report), report)

    (batch, vecs), = encode(ahead, opened.encoder)
    (other, swapped), = encode(behind, opened.encoder)
    assert [w.record.image_id for w in batch] == [1, 2] and vecs.shape == (2, opened.encoder.dim)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-3)
    assert not np.allclose(vecs[0], vecs[1], atol=1e-3)
    assert np.allclose(vecs, swapped[::-1], atol=1e-3)


def test_features_of_another_width_are_reported_and_dropped(opened: Engine) -> None:
    report = IngestReport(LIBRARY)
    rows = [Work(Record(n, "features.npy", n, vector=np.ones(7, np.float32)), "", True) for n in (1, 2)]
    (kept, vecs), = features(iter([(rows, None)]), opened.encoder.dim, report)
    assert kept == [] and vecs.shape == (0, 7)
    assert [(b.line, str(b.reason)) for b in report.bad] == [
        (n, f"feature has 7 dimensions; the library's model has {opened.encoder.dim}") for n in (1, 2)]


class FailingVectors:
    """The engine's vector store, except that an upsert fails as a crash after the images would."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def upsert(self, *args: Any, **kwargs: Any) -> None:
        raise OSError("the vector store went away")


def test_a_batch_is_written_images_first_and_a_replan_encodes_only_the_missing_vectors(opened: Engine) -> None:
    report = IngestReport(LIBRARY)
    (batch, vecs), = encode(read_all(opened, planned(opened, [record(1, 1, RED), record(2, 2, BLUE)], report),
                                     report), opened.encoder)
    with pytest.raises(OSError):
        write_batch(batch, vecs, FailingVectors(opened.vectors), opened.images, LIBRARY)  # type: ignore[arg-type]
    assert sorted(opened.images.ids(LIBRARY)) == [1, 2] and list(opened.vectors.ids(LIBRARY)) == []

    again = IngestReport(LIBRARY)
    work = planned(opened, [record(1, 1, RED), record(2, 2, BLUE), record(3, 2, GREEN)], again)
    assert [(w.record.image_id, w.store_image) for w in work] == [(1, False), (2, False)]

    write_batch(batch, vecs, opened.vectors, opened.images, LIBRARY)
    last = IngestReport(LIBRARY)
    assert planned(opened, [record(1, 1, RED), record(2, 2, GREEN)], last) == []
    assert last.present == 1 and [str(b.reason) for b in last.bad] == [
        "image id 2 is already stored with different content"]


def test_the_runner_wires_the_stages_under_its_options(opened: Engine) -> None:
    calls: list[tuple[int, int | None]] = []
    records = [record(1, 1, RED), record(2, 2, BLUE), record(3, 3, GREEN), record(4, 1, BLUE)]
    source = Source("tsv", Path("stages.tsv"), None, len(records), iter(records))
    report = ingest(source, opened.encoder, opened.vectors, opened.images, LIBRARY,
                    IngestOptions(batch_size=2, progress=lambda done, total: calls.append((done, total))))

    assert (report.added, report.present, [b.line for b in report.bad]) == (3, 0, [4])
    assert report.to_json()["bad"] == [{"line": 4, "reason": "duplicate image id 1 with different content from line 1",
                                        "file": "stages.tsv"}]
    assert calls[-1] == (4, 4) and [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert sorted(opened.vectors.ids(LIBRARY)) == sorted(opened.images.ids(LIBRARY)) == [1, 2, 3]


def test_a_video_outside_a_folder_is_reported_before_anything_reads_it(opened: Engine) -> None:
    report = IngestReport(LIBRARY)
    video = Work(Record(1, "clip.mp4", 9, video=True), "00" * 32, True)
    picture = Work(record(2, 2, RED), "11" * 32, True)
    videos = Videos(None, 1.0, True, LIBRARY, report, lambda n: None)
    assert list(videos.expand(iter([video, picture]))) == [picture]
    assert [(b.line, str(b.reason)) for b in report.bad] == [(1, "not a folder")]
    assert isinstance(report.bad[0].reason, RecordError) and report.bad[0].reason.kind == "record_video_not_in_folder"
