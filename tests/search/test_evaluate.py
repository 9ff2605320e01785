"""Evaluation in Chinese-CLIP's formats: predictions its scorer accepts, recall, exact overlap, feature files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from searchcore.engine import Engine
from searchcore.evaluate import Evaluation, evaluate, extract, predict
from tests.support import run_cli


def cn_clip_score(texts: Path, predictions: Path, out: Path) -> dict:
    """Run cn_clip's own scorer, as the Chinese-CLIP README does, and return its out.json."""
    done = subprocess.run([sys.executable, "-m", "cn_clip.eval.evaluation", str(texts), str(predictions), str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


def test_predictions_are_accepted_and_scored_by_cn_clip(env: dict[str, str], dataset: Path, tmp_path: Path) -> None:
    # The library is empty: predict ingests the split itself.
    out = tmp_path / "predictions.jsonl"
    done = run_cli("predict", str(dataset), "--split", "valid", "--output", str(out), env=env)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 18 and all(set(p) == {"text_id", "image_ids"} and len(p["image_ids"]) == 10 for p in lines)

    scored = cn_clip_score(dataset / "valid_texts.jsonl", out, tmp_path / "out.json")
    assert scored["success"] is True, scored

    ours = run_cli("evaluate", str(dataset), "--split", "valid", "--json", env=env)
    assert ours.returncode == 0, ours.stderr
    t2i = json.loads(ours.stdout)["text_to_image"]
    theirs = scored["scoreJson"]
    assert (t2i["r1"], t2i["r5"], t2i["r10"], t2i["mean"]) == (
        theirs["r1"], theirs["r5"], theirs["r10"], theirs["mean_recall"])
    assert t2i["r10"] == 100.0  # the tiny model finds every shape among its ten best


def test_evaluate_json_reports_both_directions_and_exact_overlap(env: dict[str, str], dataset: Path) -> None:
    assert run_cli("ingest", str(dataset), "--split", "valid", env=env).returncode == 0
    done = run_cli("evaluate", str(dataset), "--split", "valid", "--exact", "--json", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {"text_to_image", "image_to_text", "exact_overlap_at_10"} <= set(result)
    for direction in ("text_to_image", "image_to_text"):
        recall = result[direction]
        assert set(recall) == {"r1", "r5", "r10", "mean"}
        assert 0 <= recall["r1"] <= recall["r5"] <= recall["r10"] <= 100
        assert recall["mean"] == pytest.approx((recall["r1"] + recall["r5"] + recall["r10"]) / 3)
    assert result["exact_overlap_at_10"] == 1.0  # FLAT is exact
    assert result["index"] == "FLAT" and result["images"] == 90 and result["texts"] == 18


def _evaluate(engine: Engine, dataset: Path) -> Evaluation:
    """evaluate as the CLI wires it: the default library, filled from the split when it is empty."""
    return evaluate(lambda: engine.encoder, engine.stores, dataset, "valid", library="default",
                    fill=lambda: engine.ingest(dataset, split="valid", library="default"))


def test_without_exact_the_overlap_is_null(engine: Engine, dataset: Path) -> None:
    result = _evaluate(engine, dataset)
    assert result.exact_overlap_at_10 is None and result.to_json()["exact_overlap_at_10"] is None


def test_image_to_text_recall_matches_cn_clip_tr_scorer(engine: Engine, dataset: Path, tmp_path: Path) -> None:
    """Image→text recall equals cn_clip's evaluation_tr.py over its own annotation transform."""
    result = _evaluate(engine, dataset)
    texts = tmp_path / "valid_texts.jsonl"
    texts.write_bytes((dataset / "valid_texts.jsonl").read_bytes())
    subprocess.run([sys.executable, "-m", "cn_clip.eval.transform_ir_annotation_to_tr", "--input", str(texts)],
                   check=True, capture_output=True, timeout=120)
    entries = [json.loads(line) for line in texts.read_text(encoding="utf-8").splitlines()]
    text_vectors = engine.encoder.encode_texts([e["text"] for e in entries])
    image_ids = [i for e in entries for i in e["image_ids"]]
    stored = engine.vectors.vectors("default", image_ids)
    predictions = tmp_path / "tr_predictions.jsonl"
    with predictions.open("w") as out:
        for image_id in sorted(set(image_ids)):
            order = np.argsort(-(text_vectors @ stored[image_id]), kind="stable")[:10]
            out.write(json.dumps({"image_id": image_id, "text_ids": [entries[j]["text_id"] for j in order]}) + "\n")
    done = subprocess.run([sys.executable, "-m", "cn_clip.eval.evaluation_tr", str(tmp_path / "valid_texts.tr.jsonl"),
                           str(predictions), str(tmp_path / "tr.json")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    theirs = json.loads((tmp_path / "tr.json").read_text())["scoreJson"]
    ours = result.image_to_text
    assert (ours.r1, ours.r5, ours.r10) == pytest.approx((theirs["r1"], theirs["r5"], theirs["r10"]))


def test_a_library_holding_other_images_is_refused(env: dict[str, str], dataset: Path) -> None:
    assert run_cli("ingest", str(dataset), "--split", "train", env=env).returncode == 0
    done = run_cli("evaluate", str(dataset), "--split", "valid", env=env)
    assert done.returncode == 1
    assert "holds 36 images that are not in split 'valid'" in done.stderr
    assert "--library valid_eval" in done.stderr and "Traceback" not in done.stderr


def _top_ids(engine: Engine, library: str, query: str) -> list[int]:
    return [r.image_id for r in engine.search_text(query, 10, library=library)]


def test_extracted_features_ingest_back_to_the_same_search_results(engine: Engine, dataset: Path,
                                                                   tmp_path: Path) -> None:
    report = extract(engine.encoder, dataset, "valid", tmp_path)
    assert report.image_features == tmp_path / "valid_imgs.img_feat.jsonl" and report.images == 90
    image_lines = [json.loads(line) for line in report.image_features.read_text().splitlines()]
    text_lines = [json.loads(line) for line in report.text_features.read_text().splitlines()]
    assert all(set(e) == {"image_id", "feature"} and isinstance(e["image_id"], int) for e in image_lines)
    assert all(set(e) == {"text_id", "feature"} and len(e["feature"]) == 64 for e in text_lines)
    assert np.allclose(np.linalg.norm([e["feature"] for e in image_lines], axis=1), 1.0, atol=1e-5)

    engine.ingest(dataset, split="valid", library="encoded")
    from_features = engine.ingest(dataset, split="valid", features=report.image_features, library="features")
    assert (from_features.added, from_features.bad) == (90, [])
    for query in ("红色的圆形", "蓝色的三角形", "黑色的正方形"):
        assert _top_ids(engine, "features", query) == _top_ids(engine, "encoded", query)
    assert [p.image_ids for p in predict(lambda: engine.encoder, engine.stores, dataset, "valid",
                                         library="features")] == \
        [p.image_ids for p in predict(lambda: engine.encoder, engine.stores, dataset, "valid", library="encoded")]


def test_extract_command_writes_cn_clip_files_next_to_the_split(env: dict[str, str], dataset: Path,
                                                                tmp_path: Path) -> None:
    done = run_cli("extract", str(dataset), "--split", "train", "--output-dir", str(tmp_path), "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["images"] == 36
    ingested = run_cli("ingest", str(dataset), "--split", "train", "--features",
                       str(tmp_path / "train_imgs.img_feat.jsonl"), "--json", env=env)
    assert ingested.returncode == 0, ingested.stderr
    assert json.loads(ingested.stdout)["added"] == 36


def test_features_from_cn_clips_own_extraction_can_be_ingested(engine: Engine, dataset: Path, tiny_model: Path,
                                                               tmp_path: Path) -> None:
    """cn_clip's extract_features.py loop (its LMDB dataset, model(images, None), its json lines) on the CPU."""
    from cn_clip.clip.model import CLIP
    from cn_clip.eval.data import EvalImgDataset

    checkpoint = torch.load(tiny_model, map_location="cpu", weights_only=False)
    model = CLIP(**checkpoint["model_config"])
    model.load_state_dict({k: v.float() for k, v in checkpoint["state_dict"].items()})
    model.float().eval()
    images = EvalImgDataset(str(dataset / "lmdb" / "valid" / "imgs"),
                            resolution=checkpoint["model_config"]["image_resolution"])
    features = tmp_path / "valid_imgs.img_feat.jsonl"
    with torch.no_grad(), features.open("w") as fout:
        for image_ids, pixels in torch.utils.data.DataLoader(images, batch_size=32):
            image_features = model(pixels, None)
            image_features /= image_features.norm(dim=-1, keepdim=True)
            for image_id, feature in zip(image_ids.tolist(), image_features.tolist()):
                fout.write("{}\n".format(json.dumps({"image_id": image_id, "feature": feature})))

    report = engine.ingest(dataset, split="valid", features=features, library="cnclip")
    assert (report.added, report.bad) == (90, [])
    engine.ingest(dataset, split="valid", library="encoded")
    for query in ("红色的圆形", "绿色的正方形"):
        assert set(_top_ids(engine, "cnclip", query)[:5]) == set(_top_ids(engine, "encoded", query)[:5])
    stored = engine.get_image(1000, "cnclip")
    assert stored.data[:2] == b"\xff\xd8" and stored.captions  # image bytes joined from the split's tsv
