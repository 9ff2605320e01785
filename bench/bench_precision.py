"""What each precision costs in rankings and in query time, against the fp32 PyTorch reference.

Rankings: the tiny model (demo/tiny_clip.pt), brute-force top 10 per text, judged by the fidelity rule of
searchcore/models/fidelity.py against the fp32 PyTorch reference: tie-aware (the share of texts whose top 10 all
score, by fp32's own scores, within 1e-3 of fp32's 10th; faithful at >= 99% with R@1/5/10 within 1 point), with
strict identity (the same ten images) beside it. Two sets: demo/fidelity_set.py (near-ties and clear gaps) and a
held-out shapes split (`--images`, near-identical pictures per class); five paraphrases per class.
Speed: one short text through the text tower of RN50 (random weights), median of `--runs`, and RN50's image
tower in images/s on batches of 32, for each precision asked (the precisions take turns, so a busy spell on
a shared machine hits each alike).

Mixed: the image tower in bf16 with chosen layer kinds marked to stay f32, against the all-f32 towers.

    python -m bench.bench_precision [--images 600] [--runs 60] [--only rankings|query|mixed]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench._common import QUERIES, machine, quiet_logs, random_checkpoint, table, time_ms, write_result
from demo.fidelity_set import fidelity_set, right_answers
from demo.sample_data import write_dataset
from demo.shapes import CLASSES, caption, caption_variants
from searchcore.config import Settings
from searchcore.models import fidelity
from searchcore.models.encoder import Encoder, load_encoder

TINY_MODEL = Path(__file__).resolve().parents[1] / "demo" / "tiny_clip.pt"
PATHS = [("fp32 (torch reference)", "torch", "fp32"), ("auto (openvino)", "openvino", "auto"),
         ("fp32 (openvino)", "openvino", "fp32"), ("bf16 (openvino)", "openvino", "bf16"),
         ("int8 (openvino)", "openvino", "int8")]


def held_out(root: Path, images: int) -> tuple[list[int], list[Image.Image], list[str], dict[int, list[int]]]:
    """A shapes split the tiny model never saw: images, five paraphrases per class, and the right answers."""
    write_dataset(root, "held", images, seed=11, first_id=1, lmdb=False)
    ids, pictures = [], []
    for line in (root / "held_imgs.tsv").read_text().splitlines():
        image_id, b64 = line.split("\t")
        ids.append(int(image_id))
        pictures.append(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))
    answers = {json.loads(line)["text"]: json.loads(line)["image_ids"]
               for line in (root / "held_texts.jsonl").read_text(encoding="utf-8").splitlines()}
    texts, truth = [], {}
    for color, shape in CLASSES:
        for text in caption_variants(color, shape):
            truth[len(texts)] = answers[caption(color, shape)]
            texts.append(text)
    return ids, pictures, texts, truth


def score_matrix(encoder: Encoder, pictures: list[Image.Image], texts: list[str]) -> np.ndarray:
    """Brute-force text-by-image scores (an int8 encoder is first calibrated on the set's first 128 pictures)."""
    if encoder.precision == "int8":
        encoder.runtime_impl.calibrate(np.stack([encoder.preprocess(p) for p in pictures[:128]]))  # type: ignore
    images = np.concatenate([encoder.encode_images(pictures[i:i + 64]) for i in range(0, len(pictures), 64)])
    return encoder.encode_texts(texts) @ images.T


def judged_sets(work: Path, images: int) -> dict[str, tuple[list[Image.Image], list[str], list[set[int]]]]:
    """Each set: its pictures, its texts and each text's right picture columns."""
    pictures, classes, texts, text_classes = fidelity_set()
    ids, held, held_texts, truth = held_out(work / "data", images)
    column = {image_id: n for n, image_id in enumerate(ids)}
    return {"fidelity set (near-ties and clear gaps)": (pictures, texts, right_answers(classes, text_classes)),
            f"held-out shapes split ({images} pictures)": (held, held_texts,
                                                           [{column[i] for i in truth[t]} for t in range(len(truth))])}


def rankings(work: Path, images: int) -> list[dict[str, Any]]:
    sets = judged_sets(work, images)
    references: dict[str, np.ndarray] = {}
    rows = []
    for label, backend, precision in PATHS:
        settings = Settings(model=str(TINY_MODEL), model_dir=str(work / "models"), device="cpu", backend=backend,
                            precision=precision)
        encoder = load_encoder(settings)
        for name, (pictures, texts, truth) in sets.items():
            scores = score_matrix(encoder, pictures, texts)
            references.setdefault(name, scores)  # the first path is the reference
            judged = fidelity.judge(references[name], scores, truth)
            rows.append({"set": name, "path": label, "towers": encoder.runtime()["precision"], **judged.as_dict(),
                         "images": len(pictures)})
    return rows


def mixed(work: Path, images: int) -> list[dict[str, Any]]:
    """The image tower in bf16 with some layers marked to stay f32 (OpenVINO's `disable_fp16_compression` run-time
    info), the text tower f32: the share of texts keeping the top 10 of the all-f32 OpenVINO towers."""
    from searchcore.models.openvino.compiled import hints, ov

    ids, pictures, texts, _ = held_out(work / "mixed", images)
    encoder = load_encoder(Settings(model=str(TINY_MODEL), model_dir=str(work / "models"), device="cpu",
                                    backend="openvino", precision="fp32"))
    pixels = np.stack([encoder.preprocess(p) for p in pictures])
    words = encoder.encode_texts(texts)
    core = ov.Core()
    source = encoder.runtime_impl.entry_dir / "image.xml"  # type: ignore[attr-defined]

    def tops(keep_f32: Any, precision: Any) -> list[set[int]]:
        model = core.read_model(source)
        for op in model.get_ordered_ops():
            if keep_f32(op.get_type_name()):
                op.get_rt_info()["disable_fp16_compression_0"] = ""
        request = core.compile_model(model, "CPU", {hints.inference_precision: precision}).create_infer_request()
        request.infer({0: pixels})
        features = request.get_output_tensor(0).data.copy()
        scores = words @ (features / np.linalg.norm(features, axis=1, keepdims=True)).T
        return [set(np.argsort(-row, kind="stable")[:10].tolist()) for row in scores]

    reference = tops(lambda kind: False, ov.Type.f32)
    compute = {"MatMul", "Convolution", "MVN", "Add", "Multiply", "ScaledDotProductAttention", "Swish", "Maximum"}
    marks = {"none": set(), "MatMul + Convolution": {"MatMul", "Convolution"},
             "attention (SDPA)": {"ScaledDotProductAttention"}, "norms, adds, products": {"MVN", "Add", "Multiply"},
             "every compute layer": compute}
    rows = []
    for label, kinds in marks.items():
        found = tops(lambda kind, k=kinds: kind in k, ov.Type.bf16)  # type: ignore[misc]
        rows.append({"kept_f32": label, "same_top10": sum(a == b for a, b in zip(found, reference)) / len(texts)})
    return rows


def query_latency(work: Path, runs: int) -> list[dict[str, Any]]:
    """One short query through RN50's text tower at each precision (random weights: time only), the precisions
    taking turns query by query, so a busy spell on a shared machine hits each alike."""
    precisions = ("auto", "bf16", "fp32")
    encoders = {p: load_encoder(Settings(model=str(random_checkpoint("RN50")), model_dir=str(work / "rn50"),
                                         device="cpu", backend="openvino", precision=p)) for p in precisions}
    samples: dict[str, list[float]] = {p: [] for p in precisions}
    for n in range(runs + 3):
        for precision, encoder in encoders.items():
            taken = time_ms(lambda e=encoder, q=QUERIES[n % len(QUERIES)]: e.encode_texts([q]), 1, warmup=0)
            if n >= 3:  # the first queries warm each tower up
                samples[precision] += taken
    pixels = np.random.default_rng(0).standard_normal((32, 3, 224, 224)).astype(np.float32)
    batch_ms: dict[str, list[float]] = {p: [] for p in precisions}
    for n in range(max(3, runs // 10) + 1):
        for precision, encoder in encoders.items():
            taken = time_ms(lambda e=encoder: e.encode_pixels(pixels), 1, warmup=0)
            if n >= 1:
                batch_ms[precision] += taken
    return [{"precision": p, "towers": encoders[p].runtime()["precision"],
             "text_encode_p50_ms": statistics.median(samples[p]), "runs": runs,
             "image_img_s": len(pixels) * 1000 / statistics.median(batch_ms[p])} for p in precisions]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--only", choices=("rankings", "query", "mixed"), help="measure one of them")
    args = parser.parse_args()
    quiet_logs()
    started = machine()
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        ranks = rankings(Path(tmp), args.images) if args.only in (None, "rankings") else []
        latency = query_latency(Path(tmp), args.runs) if args.only in (None, "query") else []
        kept = mixed(Path(tmp), args.images) if args.only in (None, "mixed") else []
    print(table(["set", "path", "image", "text", "tie-aware", "strict", "R@1/5/10", "recall gap", "faithful"],
                [[r["set"], r["path"], r["towers"]["image"], r["towers"]["text"], r["tie_aware"], r["strict"],
                  "/".join(f"{v:.1f}" for v in r["recall"]), r["recall_gap"], "yes" if r["faithful"] else "no"]
                 for r in ranks]))
    print(table(["asked", "image", "text", "RN50 text encode p50 ms", "RN50 image img/s"],
                [[r["precision"], r["towers"]["image"], r["towers"]["text"], r["text_encode_p50_ms"],
                  r["image_img_s"]] for r in latency]))
    print(table(["image tower bf16, kept in f32", "same top-10 as all-f32"],
                [[r["kept_f32"], r["same_top10"]] for r in kept]))
    name = f"precision_{args.only}" if args.only else "precision"
    print(write_result(name, {"rankings": ranks, "query": latency, "mixed": kept, "machine": started}))


if __name__ == "__main__":
    main()
