"""The tiny Chinese-CLIP checkpoint and the synthetic dataset writer, checked with cn_clip's own API."""

from __future__ import annotations

import base64
import io
import json
import pickle
import random
from pathlib import Path

import lmdb
import pytest
import torch
from cn_clip.clip import image_transform, tokenize
from cn_clip.clip.model import CLIP
from PIL import Image

from demo.sample_data import image_classes, write_dataset
from demo.shapes import CLASSES, caption, draw

CHECKPOINT = Path(__file__).resolve().parents[2] / "demo" / "tiny_clip.pt"
PER_CLASS = 5


@pytest.fixture(scope="module")
def model() -> CLIP:
    """The checkpoint loaded exactly as documented: CLIP(**model_config), fp32, eval."""
    ckpt = torch.load(CHECKPOINT, map_location="cpu", weights_only=False)
    clip = CLIP(**ckpt["model_config"])
    clip.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
    return clip.float().eval()


@pytest.fixture(scope="module")
def gallery(model: CLIP) -> tuple[torch.Tensor, list[tuple[str, str]]]:
    """Normalised features of freshly drawn images, PER_CLASS of each class, at assorted sizes."""
    rng = random.Random(2024)
    labels = [c for c in CLASSES for _ in range(PER_CLASS)]
    sizes = [(96, 96), (500, 375), (375, 500), (64, 128), (200, 150)]
    transform = image_transform(model.visual.input_resolution)
    images = torch.stack([transform(draw(*c, rng, sizes[i % len(sizes)])) for i, c in enumerate(labels)])
    with torch.no_grad():
        feats = model.encode_image(images)
    return feats / feats.norm(dim=-1, keepdim=True), labels


def ranked(model: CLIP, gallery: tuple[torch.Tensor, list[tuple[str, str]]], text: str) -> list[tuple[str, str]]:
    """Classes of the gallery images in descending cosine order for one text."""
    feats, labels = gallery
    with torch.no_grad():
        t = model.encode_text(tokenize([text], context_length=52))
    scores = (feats @ (t / t.norm(dim=-1, keepdim=True)).T).squeeze(1)
    return [labels[i] for i in scores.argsort(descending=True).tolist()]


def test_checkpoint_is_small_fp16_and_complete() -> None:
    ckpt = torch.load(CHECKPOINT, map_location="cpu", weights_only=False)
    assert CHECKPOINT.stat().st_size < 5_000_000
    assert ckpt["model_config"]["vocab_size"] == 21128
    assert ckpt["model_config"]["text_max_position_embeddings"] >= 52
    floats = [v for v in ckpt["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    missing, unexpected = CLIP(**ckpt["model_config"]).load_state_dict(
        {k: v.float() for k, v in ckpt["state_dict"].items()}, strict=False
    )
    assert not missing and not unexpected


def test_red_circles_rank_first(model: CLIP, gallery: tuple[torch.Tensor, list[tuple[str, str]]]) -> None:
    assert ranked(model, gallery, "红色的圆形")[:PER_CLASS] == [("红色", "圆形")] * PER_CLASS


@pytest.mark.parametrize("cls", CLASSES, ids=[caption(*c) for c in CLASSES])
def test_every_canonical_caption_finds_its_class(
    model: CLIP, gallery: tuple[torch.Tensor, list[tuple[str, str]]], cls: tuple[str, str]
) -> None:
    assert ranked(model, gallery, caption(*cls))[:PER_CLASS] == [cls] * PER_CLASS


def test_write_dataset_produces_cn_clip_layout(tmp_path: Path) -> None:
    n, first_id = 40, 500
    root = write_dataset(tmp_path / "ds", "valid", n, seed=3, size=(64, 48), first_id=first_id)
    assert root == tmp_path / "ds"

    rows = [line.split("\t") for line in (root / "valid_imgs.tsv").read_text(encoding="utf-8").splitlines()]
    assert [int(image_id) for image_id, _ in rows] == list(range(first_id, first_id + n))
    for _, b64 in rows:
        image = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert (image.format, image.size, image.mode) == ("JPEG", (64, 48), "RGB")

    texts = [json.loads(line) for line in (root / "valid_texts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [t["text"] for t in texts] == [caption(*c) for c in CLASSES]
    assert len({t["text_id"] for t in texts}) == len(texts)
    assert all(isinstance(t["text_id"], int) for t in texts)
    assert sorted(i for t in texts for i in t["image_ids"]) == list(range(first_id, first_id + n))

    classes = image_classes(root, "valid")
    assert classes == {first_id + i: CLASSES[i % len(CLASSES)] for i in range(n)}

    env = lmdb.open(str(root / "lmdb" / "valid" / "imgs"), readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.get(b"num_images") == str(n).encode()
        assert all(txn.get(image_id.encode()) == b64.encode() for image_id, b64 in rows)
    env.close()
    env = lmdb.open(str(root / "lmdb" / "valid" / "pairs"), readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.get(b"num_samples") == str(n).encode()
        image_id, text_id, text = pickle.loads(txn.get(b"0"))
        assert classes[image_id] == next(c for c in CLASSES if caption(*c) == text)
        assert text_id in {t["text_id"] for t in texts}
    env.close()


def test_write_dataset_without_lmdb(tmp_path: Path) -> None:
    root = write_dataset(tmp_path, "train", 5, lmdb=False, fmt="PNG")
    assert not (root / "lmdb").exists()
    assert len(image_classes(root, "train")) == 5
    b64 = (root / "train_imgs.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")[1]
    assert Image.open(io.BytesIO(base64.b64decode(b64))).format == "PNG"
