"""The duplicate finder: resized, recompressed and cropped copies of a picture form one group, and nothing else does.

The tiny model sees 64×64 pixels and was trained to tell 18 colour-shape classes apart, so the distinct
pictures here are one per class: two red circles are one picture to it (they score ~0.98). Here the
copies score 0.98 (3% cropped) to 0.9999 (half size) against their originals, and two distinct pictures
at most 0.68, so the default threshold 0.95 has a margin on both sides. RN50 with random weights cannot
stand in: it scores any two pictures above 0.9999.
"""

from __future__ import annotations

import io
import itertools
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo.shapes import CLASSES, draw
from searchcore.config import Settings
from searchcore.duplicates import duplicate_groups, find_duplicates
from searchcore.engine import Engine
from searchcore.models.encoder import Encoder
from searchcore.sources.datasets import folder_image_id
from tests.support import CliRun

LIBRARY = "photos"
# Which originals get which copies: groups of 4, 3, 2, 2 and 2 images; the other 13 originals have none.
COPIES = {0: ("half", "q40", "crop"), 5: ("half", "q40"), 9: ("crop",), 13: ("q40",), 16: ("half",)}


@dataclass(frozen=True)
class Planted:
    folder: Path
    originals: set[int]
    groups: set[frozenset[int]]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _copy(image: Image.Image, kind: str) -> tuple[str, bytes]:
    if kind == "half":
        return "png", _png(image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS))
    if kind == "q40":
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=40)
        return "jpg", buffer.getvalue()
    dx, dy = round(image.width * 0.03), round(image.height * 0.03)  # 3% off each border
    return "png", _png(image.crop((dx, dy, image.width - dx, image.height - dy)))


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    """A folder with one picture of each class and, for five of them, resized, recompressed or cropped copies."""
    folder = tmp_path_factory.mktemp("photos")
    rng = random.Random(2)
    originals, groups = set(), set()
    for number, (color, shape) in enumerate(CLASSES):
        image = draw(color, shape, rng, size=(192, 160))
        data = _png(image)
        (folder / f"{number:02d}.png").write_bytes(data)
        originals.add(folder_image_id(data))
        group = {folder_image_id(data)}
        for kind in COPIES.get(number, ()):
            suffix, copy = _copy(image, kind)
            (folder / f"{number:02d}_{kind}.{suffix}").write_bytes(copy)
            group.add(folder_image_id(copy))
        if len(group) > 1:
            groups.add(frozenset(group))
    return Planted(folder, originals, groups)


def _ingest(engine: Engine, planted: Planted) -> None:
    report = engine.ingest(planted.folder, library=LIBRARY)
    assert (report.added, report.bad) == (len(planted.originals) + sum(map(len, COPIES.values())), [])


def test_copies_of_a_picture_form_exactly_its_group(engine: Engine, planted: Planted) -> None:
    _ingest(engine, planted)
    groups = find_duplicates(engine.stores, LIBRARY)

    assert {frozenset(g.images) for g in groups} == planted.groups
    assert all(len(planted.originals & set(g.images)) == 1 for g in groups)  # never two distinct pictures
    assert [len(g.images) for g in groups] == [4, 3, 2, 2, 2]
    assert all(g.images == sorted(g.images) for g in groups)
    for group in groups:
        stored = engine.vectors.vectors(LIBRARY, group.images)
        lowest = min(float(stored[a] @ stored[b]) for a, b in itertools.combinations(group.images, 2))
        assert group.min_score == pytest.approx(lowest, abs=1e-5)


def _brute_force_groups(vectors: np.ndarray, threshold: float) -> set[frozenset[int]]:
    """Connected components of the graph of pairs scoring >= threshold, one pair at a time."""
    linked = (vectors @ vectors.T) >= np.float32(threshold)
    unseen, groups = set(range(len(vectors))), set()
    while unseen:
        todo, group = [unseen.pop()], set()
        while todo:
            row = todo.pop()
            group.add(row)
            found = {int(j) for j in np.flatnonzero(linked[row])} & unseen
            unseen -= found
            todo.extend(found)
        if len(group) > 1:
            groups.add(frozenset(group))
    return groups


def test_scan_finds_every_pair_however_it_is_tiled() -> None:
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((300, 48)).astype(np.float32)
    for _ in range(60):  # near copies of random rows, some of copies (chains), some rows copied twice
        source, target = rng.integers(0, len(vectors), 2)
        vectors[target] = vectors[source] + 0.2 * rng.standard_normal(48)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    truth = _brute_force_groups(vectors, 0.95)
    assert len(truth) > 10 and any(len(g) > 2 for g in truth)

    steps: list[tuple[int, int]] = []
    for block in (1, 7, 64, 2048):  # tiles smaller than, across and larger than the library
        steps.clear()
        found = duplicate_groups(range(len(vectors)), vectors, 0.95, block=block,
                                 progress=lambda done, total: steps.append((done, total)))
        assert {frozenset(g.images) for g in found} == truth, block
        assert steps[-1] == (300 * 299 // 2, 300 * 299 // 2)  # a progress bar ends full
        assert [done for done, _ in steps] == sorted(done for done, _ in steps)


def test_min_score_shows_a_chain() -> None:
    # a ~ b and b ~ c at 0.96, but a and c only at ~0.84: single linkage joins them, min_score tells
    a, b, c = (np.array([np.cos(t), np.sin(t)], dtype=np.float32) for t in (0.0, 0.285, 0.57))
    far = np.array([-1, 0], dtype=np.float32)
    [group] = duplicate_groups([10, 11, 12, 13], np.stack([a, b, c, far]), 0.95)
    assert group.images == [10, 11, 12]
    assert group.min_score == pytest.approx(float(np.cos(0.57)), abs=1e-6)


def test_cli_prints_the_groups(settings: Settings, torch_encoder: Encoder, planted: Planted,
                               cli_in_process: CliRun) -> None:
    engine = Engine(settings, encoder=torch_encoder)
    try:
        _ingest(engine, planted)
        expected = find_duplicates(engine.stores, LIBRARY)
        strict = find_duplicates(engine.stores, LIBRARY, 0.995)
    finally:
        engine.close()
    # The cropped copies (0.98 and 0.99) fall out at 0.995; the others score 0.9997 or more.
    assert [len(g.images) for g in strict] == [3, 3, 2, 2]

    code, out, err = cli_in_process(settings, "duplicates", "--library", LIBRARY, "--json")
    assert code == 0, err
    assert json.loads(out) == [{"images": g.images, "min_score": round(g.min_score, 6)} for g in expected]

    code, out, err = cli_in_process(settings, "duplicates", "--library", LIBRARY, "--threshold", "0.995")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"library {LIBRARY}: 4 groups of near-duplicates (10 images) at threshold 0.995"
    assert [line.split(": ")[1].split() for line in lines[1:]] == [[str(i) for i in g.images] for g in strict]


@pytest.mark.parametrize("threshold", ["abc", "0", "-0.5", "1.5", "nan", "inf", ""])
def test_cli_rejects_a_bad_threshold(settings: Settings, cli_in_process: CliRun, threshold: str) -> None:
    code, out, err = cli_in_process(settings, "duplicates", "--threshold", threshold)
    assert code == 1
    assert err.startswith(f"error: threshold must be a number greater than 0 and at most 1, got {threshold!r}")
    assert "Traceback" not in out + err


def test_cli_names_a_library_that_does_not_exist(settings: Settings, cli_in_process: CliRun) -> None:
    code, out, err = cli_in_process(settings, "duplicates", "--library", "nosuch")
    assert (code, out) == (1, "")
    assert err == "error: library 'nosuch' does not exist\n"
