"""Fidelity: the project ranks images as Chinese-CLIP itself does.

fp32 (PyTorch backend): predictions for the valid split are identical to a
reference computed here straight from cn_clip's public API. Precision auto (OpenVINO
backend: both towers in f32 on every CPU): recall within 0.5 points of fp32 and the same ten
images in the top-10 for at least 95% of the texts.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from demo.shapes import CLASSES, caption_variants
from searchcore.engine import Engine
from searchcore.evaluate import Prediction, predict, recall
from searchcore.models.encoder import Encoder
from tests.support import tiny_settings

MAX_RECALL_DROP = 0.5  # points
MIN_SAME_TOP10 = 0.95


@pytest.fixture(scope="module")
def fidelity_set(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The valid split's 90 images with five paraphrases per class: 90 texts, so one text is ~1% of the score."""
    root = tmp_path_factory.mktemp("fidelity")
    (root / "valid_imgs.tsv").write_bytes((dataset / "valid_imgs.tsv").read_bytes())
    by_caption: dict[str, list[int]] = {}
    for line in (dataset / "valid_texts.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        by_caption[entry["text"]] = entry["image_ids"]
    with (root / "valid_texts.jsonl").open("w", encoding="utf-8") as out:
        text_id = 1
        for color, shape in CLASSES:
            for text in caption_variants(color, shape):
                entry = {"text_id": text_id, "text": text, "image_ids": by_caption[f"{color}的{shape}"]}
                out.write(json.dumps(entry, ensure_ascii=False) + "\n")
                text_id += 1
    return root


def reference_predictions(checkpoint_path: Path, root: Path, split: str) -> list[Prediction]:
    """Top-10 from cn_clip's public API alone: CLIP(**model_config), image_transform, tokenize, brute force."""
    from cn_clip.clip import image_transform, tokenize
    from cn_clip.clip.model import CLIP

    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    model = CLIP(**checkpoint["model_config"])
    model.load_state_dict({k: v.float() for k, v in checkpoint["state_dict"].items()})
    model.float().eval()
    transform = image_transform(checkpoint["model_config"]["image_resolution"])

    image_ids, pictures = [], []
    for line in (root / f"{split}_imgs.tsv").read_text().splitlines():
        image_id, b64 = line.split("\t")
        image_ids.append(int(image_id))
        pictures.append(transform(Image.open(io.BytesIO(base64.b64decode(b64)))))
    texts = [json.loads(line) for line in (root / f"{split}_texts.jsonl").read_text(encoding="utf-8").splitlines()]
    with torch.no_grad():
        images = model.encode_image(torch.stack(pictures))
        words = model.encode_text(tokenize([t["text"] for t in texts]))
    images = images / images.norm(dim=-1, keepdim=True)
    words = words / words.norm(dim=-1, keepdim=True)
    scores = (words @ images.t()).numpy()
    return [Prediction(t["text_id"], [image_ids[j] for j in np.argsort(-row, kind="stable")[:10]],
                       sorted(row.tolist(), reverse=True)[:10]) for t, row in zip(texts, scores)]


def scores_of(predictions: list[Prediction], root: Path) -> tuple[float, float, float]:
    texts = [json.loads(line) for line in (root / "valid_texts.jsonl").read_text(encoding="utf-8").splitlines()]
    result = recall({t["text_id"]: t["image_ids"] for t in texts}, {p.text_id: p.image_ids for p in predictions})
    return result.r1, result.r5, result.r10


@pytest.fixture(scope="module")
def fp32_predictions(fidelity_set: Path, torch_encoder: Encoder, model_cache: Path,
                     tmp_path_factory: pytest.TempPathFactory) -> list[Prediction]:
    settings = tiny_settings(tmp_path_factory.mktemp("fp32"), model_cache, backend="torch", precision="fp32")
    engine = Engine(settings, encoder=torch_encoder)
    try:
        return predict(engine, fidelity_set, "valid")
    finally:
        engine.close()


def test_fp32_predictions_equal_cn_clip_reference(fp32_predictions: list[Prediction], fidelity_set: Path,
                                                  tiny_model: Path) -> None:
    reference = reference_predictions(tiny_model, fidelity_set, "valid")
    assert [p.text_id for p in fp32_predictions] == [p.text_id for p in reference]
    differing = [(ours, theirs) for ours, theirs in zip(fp32_predictions, reference)
                 if ours.image_ids != theirs.image_ids]
    assert not differing, differing[:3]
    for ours, theirs in zip(fp32_predictions, reference):
        assert ours.scores == pytest.approx(theirs.scores, abs=1e-5)


def test_auto_precision_keeps_recall_and_rankings(fp32_predictions: list[Prediction], fidelity_set: Path,
                                                 ov_encoder: Encoder, model_cache: Path,
                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = tiny_settings(tmp_path_factory.mktemp("auto"), model_cache, backend="openvino", precision="auto")
    engine = Engine(settings, encoder=ov_encoder)
    try:
        auto = predict(engine, fidelity_set, "valid")
    finally:
        engine.close()
    for ours, exact in zip(scores_of(auto, fidelity_set), scores_of(fp32_predictions, fidelity_set)):
        assert abs(ours - exact) <= MAX_RECALL_DROP
    # "Identical top-10" is the same ten images: OpenVINO's f32 kernels sum in another order than torch's, so
    # two images whose scores differ in the last bits may swap places, which a result page of ten does not show.
    same = sum(set(a.image_ids) == set(b.image_ids) for a, b in zip(auto, fp32_predictions)) / len(auto)
    assert same >= MIN_SAME_TOP10, f"the same top-10 images for {same:.1%} of texts"
