"""Write a synthetic shapes dataset in Chinese-CLIP's own layout (tsv + jsonl + optional LMDB).

CLI: python -m demo.sample_data OUT --splits train:180,valid:90 [--seed 0] [--size 96x96] [--no-lmdb]
Each split is written as OUT/{split}_imgs.tsv and OUT/{split}_texts.jsonl; with LMDB (default)
cn_clip's build_lmdb_dataset script also builds OUT/lmdb/{split}/{imgs,pairs}.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import random
import subprocess
import sys
from pathlib import Path

if not __package__:  # allow running as `python demo/<script>.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.shapes import CLASSES, caption, draw  # noqa: E402


def write_dataset(
    root: str | Path,
    split: str,
    n_images: int,
    *,
    seed: int = 0,
    size: tuple[int, int] = (96, 96),
    first_id: int = 1000,
    lmdb: bool = True,
    fmt: str = "JPEG",
) -> Path:
    """Write {split}_imgs.tsv and {split}_texts.jsonl under root (plus LMDB via cn_clip) and return root."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    by_class: dict[tuple[str, str], list[int]] = {}
    with open(root / f"{split}_imgs.tsv", "w", encoding="utf-8") as f:
        for i in range(n_images):
            cls = CLASSES[i % len(CLASSES)]
            image_id = first_id + i
            buf = io.BytesIO()
            draw(*cls, rng, size).save(buf, format=fmt)
            f.write(f"{image_id}\t{base64.b64encode(buf.getvalue()).decode('ascii')}\n")
            by_class.setdefault(cls, []).append(image_id)
    with open(root / f"{split}_texts.jsonl", "w", encoding="utf-8") as f:
        for j, cls in enumerate(c for c in CLASSES if c in by_class):
            obj = {"text_id": first_id * 10 + j, "text": caption(*cls), "image_ids": by_class[cls]}
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
    if lmdb:
        subprocess.run(
            [sys.executable, "-m", "cn_clip.preprocess.build_lmdb_dataset", "--data_dir", str(root), "--splits", split],
            check=True,
            capture_output=True,
        )
    return root


def image_classes(root: str | Path, split: str) -> dict[int, tuple[str, str]]:
    """Recover each image's (color, shape) class from {split}_texts.jsonl."""
    by_caption = {caption(*c): c for c in CLASSES}
    out: dict[int, tuple[str, str]] = {}
    with open(Path(root) / f"{split}_texts.jsonl", encoding="utf-8") as f:
        for line in f:
            obj = json.loads(line)
            for image_id in obj["image_ids"]:
                out[int(image_id)] = by_caption[obj["text"]]
    return out


def _main() -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--splits", default="train:180,valid:90", help="comma-separated split:n_images pairs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="96x96", help="WxH")
    p.add_argument("--first-id", type=int, default=1000)
    p.add_argument("--no-lmdb", action="store_true")
    a = p.parse_args()
    w, h = (int(v) for v in a.size.lower().split("x"))
    first_id = a.first_id
    for k, item in enumerate(a.splits.split(",")):
        split, n = item.split(":")
        write_dataset(a.out, split, int(n), seed=a.seed + k, size=(w, h), first_id=first_id, lmdb=not a.no_lmdb)
        print(f"wrote {split}: {n} images, ids {first_id}..{first_id + int(n) - 1}")
        first_id += int(n)
    print(f"dataset in {a.out}")


if __name__ == "__main__":
    _main()
