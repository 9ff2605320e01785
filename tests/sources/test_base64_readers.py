"""Every reader of Chinese-CLIP base64 images takes the standard and the URL-safe alphabet, as cn_clip's own
`base64.urlsafe_b64decode` does, and still names each broken record with its line and reason, storing none of it."""

from __future__ import annotations

import base64
import io
import json
import logging
import random
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo.shapes import CLASSES, caption, draw
from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.evaluate import evaluate, extract, predict
from searchcore.jobs.distributed import ingest_ray
from searchcore.models.encoder import Encoder
from searchcore.records import BadRecord

ENCODE: dict[str, Callable[[bytes], bytes]] = {"standard": base64.b64encode, "urlsafe": base64.urlsafe_b64encode}
OWN_CHARACTERS = {"standard": b"+/", "urlsafe": b"-_"}  # what only each alphabet has
FIRST_ID = 101
LINES = 15
# Line of each broken record -> words its reason must contain.
BROKEN = {5: "Only base64 data is allowed", 9: "Incorrect padding", 13: "not an image"}


@dataclass
class Split:
    """A valid split on disk and the original bytes of each of its good images."""

    root: Path
    pictures: dict[int, bytes]


def image_id(line: int) -> int:
    return FIRST_ID + line - 1  # ids of equal length, so an LMDB cursor also meets them in line order


def picture_class(line: int) -> tuple[str, str]:
    return CLASSES[line % 6]  # red and green shapes, two pictures of each among the good lines


def picture(line: int) -> bytes:
    """A coloured shape, PNG on odd lines and JPEG on even ones."""
    color, shape = picture_class(line)
    buffer = io.BytesIO()
    draw(color, shape, random.Random(line), (48, 48)).save(buffer, format="PNG" if line % 2 else "JPEG")
    return buffer.getvalue()


def broken_payload(line: int, encode: Callable[[bytes], bytes]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 40, 40)).save(buffer, format="PNG")
    text = encode(buffer.getvalue())
    if "Only base64" in BROKEN[line]:
        return text[:20] + b"*" + text[21:]  # outside both alphabets
    if "padding" in BROKEN[line]:
        assert text.endswith(b"="), "the picture's base64 needs padding to lose"
        return text.rstrip(b"=")
    return encode(b"just some text, not a picture")


def write_split(root: Path, alphabets: list[str], broken: dict[int, str] = BROKEN) -> Split:
    """valid_imgs.tsv and valid_texts.jsonl: pictures and the broken lines, line n in alphabets[n % len]."""
    root.mkdir(parents=True)
    pictures: dict[int, bytes] = {}
    by_alphabet: dict[str, bytes] = dict.fromkeys(alphabets, b"")
    lines = []
    for line in range(1, LINES + 1):
        alphabet = alphabets[line % len(alphabets)]
        if line in broken:
            payload = broken_payload(line, ENCODE[alphabet])
        else:
            pictures[image_id(line)] = picture(line)
            payload = ENCODE[alphabet](pictures[image_id(line)])
            by_alphabet[alphabet] += payload
        lines.append(f"{image_id(line)}\t".encode() + payload + b"\n")
    for alphabet, payloads in by_alphabet.items():  # or the test would not test the alphabet it names
        assert all(c in payloads for c in OWN_CHARACTERS[alphabet]), alphabet
        assert not any(c in payloads for other in OWN_CHARACTERS if other != alphabet for c in OWN_CHARACTERS[other])
    (root / "valid_imgs.tsv").write_bytes(b"".join(lines))
    texts: dict[str, list[int]] = {}
    for line in range(1, LINES + 1):
        if image_id(line) in pictures:
            texts.setdefault(caption(*picture_class(line)), []).append(image_id(line))
    (root / "valid_texts.jsonl").write_text("".join(
        json.dumps({"text_id": n, "text": text, "image_ids": ids}, ensure_ascii=False) + "\n"
        for n, (text, ids) in enumerate(texts.items(), 1)), encoding="utf-8")
    return Split(root, pictures)


@pytest.fixture(params=["standard", "urlsafe"])
def split(request: pytest.FixtureRequest, tmp_path: Path) -> Split:
    return write_split(tmp_path / "dataset", [request.param])


def assert_reported(bad: list[BadRecord], file: str, reasons: dict[int, str]) -> None:
    """Exactly these lines of this file are reported, each with its reason."""
    found = {(b.file, b.line): str(b.reason) for b in bad}
    assert set(found) == {(file, line) for line in reasons}, found
    for line, words in reasons.items():
        assert words in found[(file, line)], (line, found[(file, line)])


def assert_only_pictures_stored(engine: Engine, library: str, split: Split) -> None:
    """Both stores hold exactly the good images, with their original bytes."""
    ids = sorted(split.pictures)
    assert sorted(engine.images.ids(library)) == sorted(engine.vectors.ids(library)) == ids
    assert {i: s.data for i, s in engine.images.get_many(library, ids).items()} == split.pictures


def test_tsv_split_in_either_alphabet(engine: Engine, split: Split) -> None:
    report = engine.ingest(split.root, split="valid")
    assert (report.added, report.present) == (12, 0)
    assert_reported(report.bad, "valid_imgs.tsv", BROKEN)
    assert_only_pictures_stored(engine, "default", split)


def test_lmdb_split_in_either_alphabet(engine: Engine, split: Split) -> None:
    subprocess.run([sys.executable, "-m", "cn_clip.preprocess.build_lmdb_dataset", "--data_dir", str(split.root),
                    "--splits", "valid"], check=True, capture_output=True)
    (split.root / "valid_imgs.tsv").unlink()
    report = engine.ingest(split.root, split="valid")
    assert (report.added, report.present) == (12, 0)
    assert_reported(report.bad, "lmdb/valid/imgs", BROKEN)
    assert_only_pictures_stored(engine, "default", split)


def test_feature_file_joined_with_a_tsv_in_either_alphabet(engine: Engine, split: Split) -> None:
    features = split.root / "valid_imgs.img_feat.jsonl"
    vectors = np.random.default_rng(0).normal(size=(LINES, engine.encoder.dim))
    features.write_text("".join(json.dumps({"image_id": image_id(line), "feature": vectors[line - 1].tolist()}) + "\n"
                                for line in range(1, LINES + 1)))
    report = engine.ingest(split.root, split="valid", features=features)
    assert (report.added, report.present) == (12, 0)
    # A feature whose tsv image cannot be decoded has no image to store: reported at its feature line, with why.
    assert_reported(report.bad, features.name, {
        5: f"image id 105: line 5 of valid_imgs.tsv has invalid base64 ({BROKEN[5]}",
        9: f"image id 109: line 9 of valid_imgs.tsv has invalid base64 ({BROKEN[9]}", 13: "not an image"})
    assert_only_pictures_stored(engine, "default", split)


def test_extract_in_either_alphabet(engine: Engine, split: Split, tmp_path: Path) -> None:
    report = extract(engine.encoder, split.root, "valid", tmp_path / "features")
    assert report.images == 12
    assert_reported(report.bad, "valid_imgs.tsv", BROKEN)
    lines = [json.loads(line) for line in report.image_features.read_text().splitlines()]
    assert [e["image_id"] for e in lines] == sorted(split.pictures)
    originals = engine.encoder.encode_images([Image.open(io.BytesIO(split.pictures[e["image_id"]])) for e in lines])
    assert min(float(np.dot(e["feature"], v)) for e, v in zip(lines, originals)) > 0.999


@pytest.mark.parametrize("alphabet", ["standard", "urlsafe"])
def test_predict_and_evaluate_in_either_alphabet(engine: Engine, tmp_path: Path, alphabet: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    split = write_split(tmp_path / "dataset", [alphabet])
    with caplog.at_level(logging.WARNING, logger="searchcore.evaluate"):
        # fills the empty library from the split first
        predictions = predict(lambda: engine.encoder, engine.stores, split.root, "valid", library="default",
                              fill=lambda: engine.ingest(split.root, split="valid"))
    assert_only_pictures_stored(engine, "default", split)
    assert len(predictions) == 6 and all(set(p.image_ids) <= set(split.pictures) for p in predictions)
    assert all(f"valid_imgs.tsv:{line}" in caplog.text for line in BROKEN), caplog.text  # what predict skipped
    # the broken records are skipped, and said so
    result = evaluate(lambda: engine.encoder, engine.stores, split.root, "valid", library="default")
    assert (result.images, result.texts) == (12, 6)
    assert_reported(result.bad, "valid_imgs.tsv", BROKEN)
    assert result.text_to_image.r10 == 100.0


@pytest.mark.slow
def test_ray_ingest_reads_a_file_mixing_both_alphabets(server_settings: Settings, torch_encoder: Encoder,
                                                       tmp_path: Path) -> None:
    split = write_split(tmp_path / "mixed", ["standard", "urlsafe"])
    engine = Engine(server_settings, encoder=torch_encoder)
    try:
        report = ingest_ray(server_settings, split.root, split="valid", num_workers=1)
        assert (report.added, report.present) == (12, 0)
        # Ray keeps no line numbers, yet each bad record is reported at its line (and names its image id).
        assert_reported(report.bad, "valid_imgs.tsv", {5: f"image id 105: invalid base64 ({BROKEN[5]}",
                                                       9: f"image id 109: invalid base64 ({BROKEN[9]}",
                                                       13: BROKEN[13]})
        assert_only_pictures_stored(engine, server_settings.library, split)
    finally:
        engine.drop()
        engine.close()
