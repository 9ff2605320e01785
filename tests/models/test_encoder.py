"""The encoder matches cn_clip's own reference path, and every kind of checkpoint loads."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from cn_clip.clip import image_transform
from cn_clip.clip import tokenize as cn_tokenize
from cn_clip.clip.model import CLIP

from demo.shapes import CLASSES, caption, draw
from searchcore.config import Settings
from searchcore.errors import ModelError
from searchcore.models.encoder import Encoder, load_encoder
from searchcore.models.preprocess import preprocess


def reference_model(path: Path) -> tuple[CLIP, int]:
    """The tiny model loaded straight from cn_clip's public class."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = CLIP(**ckpt["model_config"])
    model.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
    return model.float().eval(), int(ckpt["model_config"]["image_resolution"])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def sample_images(n: int = 12) -> list:
    rng = random.Random(7)
    return [draw(*CLASSES[i % len(CLASSES)], rng, (rng.randint(40, 200), rng.randint(40, 200))) for i in range(n)]


def test_preprocessing_is_cn_clips_image_transform() -> None:
    transform = image_transform(64)
    for image in sample_images(6):
        ours = preprocess(image, 64)
        theirs = transform(image).numpy()
        assert np.abs(ours - theirs).max() < 1e-5


def test_fp32_vectors_match_the_cn_clip_reference(torch_encoder: Encoder, tiny_model: Path) -> None:
    model, resolution = reference_model(tiny_model)
    images = sample_images()
    texts = [caption(*c) for c in CLASSES]
    with torch.no_grad():
        ref_img = model.encode_image(torch.stack([image_transform(resolution)(i) for i in images])).numpy()
        ref_txt = model.encode_text(cn_tokenize(texts, context_length=52)).numpy()
    ours_img, ours_txt = torch_encoder.encode_images(images), torch_encoder.encode_texts(texts)
    assert ours_img.dtype == np.float32 and ours_img.shape == (len(images), torch_encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(ours_img, axis=1), 1.0, atol=1e-5)
    assert cosines(ours_img, ref_img).min() >= 0.9999
    assert cosines(ours_txt, ref_txt).min() >= 0.9999


def test_long_text_is_truncated_not_rejected(torch_encoder: Encoder) -> None:
    vectors = torch_encoder.encode_texts(["红色的圆形" * 500, "蓝色"])
    assert vectors.shape == (2, torch_encoder.dim) and np.isfinite(vectors).all()


def test_text_meaning_survives_encoding(torch_encoder: Encoder) -> None:
    rng = random.Random(3)
    images = [draw(c, s, rng) for c, s in CLASSES]
    sims = torch_encoder.encode_texts(["红色的圆形"]) @ torch_encoder.encode_images(images).T
    assert CLASSES[int(sims.argmax())] == ("红色", "圆形")


def test_module_prefixed_state_dict_loads(tmp_path: Path, tiny_model: Path) -> None:
    ckpt = torch.load(tiny_model, map_location="cpu", weights_only=False)
    ckpt["state_dict"] = {f"module.{k}": v for k, v in ckpt["state_dict"].items()}
    path = tmp_path / "wrapped.pt"
    torch.save(ckpt, path)
    encoder = load_encoder(Settings(model=str(path), backend="torch", precision="fp32", device="cpu",
                                    model_dir=str(tmp_path)))
    reference = load_encoder(Settings(model=str(tiny_model), backend="torch", precision="fp32", device="cpu",
                                      model_dir=str(tmp_path)))
    assert cosines(encoder.encode_texts(["黄色的三角形"]), reference.encode_texts(["黄色的三角形"]))[0] > 0.99999


def test_fine_tuned_checkpoint_needs_its_architecture(tmp_path: Path, tiny_model: Path) -> None:
    ckpt = torch.load(tiny_model, map_location="cpu", weights_only=False)
    path = tmp_path / "finetuned.pt"
    torch.save({"state_dict": ckpt["state_dict"], "epoch": 3}, path)
    with pytest.raises(ModelError, match="--vision-model"):
        load_encoder(Settings(model=str(path), backend="torch", device="cpu", model_dir=str(tmp_path)))


def test_unknown_model_name_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="neither an official model"):
        load_encoder(Settings(model="ViT-Z-99", device="cpu", model_dir=str(tmp_path)))


def test_official_model_missing_offline_says_where_to_put_it(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="clip_cn_rn50.pt"):
        load_encoder(Settings(model="RN50", device="cpu", backend="torch", model_dir=str(tmp_path)))


@pytest.mark.slow
def test_official_model_in_the_cache_folder_loads_without_network(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """RN50 by name, through cn_clip.load_from_name, from a checkpoint placed in SEARCHCORE_MODEL_DIR."""
    from cn_clip.clip.utils import create_model

    model = create_model("RN50@RBT3-chinese")  # fp16 weights, as the official files hold them
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 1},
               tmp_path / "clip_cn_rn50.pt")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = load_encoder(Settings(model="RN50", device="cpu", backend="torch", precision="fp32",
                                    model_dir=str(tmp_path)))
    assert (encoder.name, encoder.dim, encoder.resolution) == ("RN50", 1024, 224)
    vectors = encoder.encode_images(sample_images(2))
    assert vectors.shape == (2, 1024) and np.isfinite(vectors).all()
