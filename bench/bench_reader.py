"""The ingest's reader alone, in images/s, against its number of workers.

Two stages on the same ~94 KB 500x375 JPEGs of a Chinese-CLIP tsv: the records alone (read, base64,
sha256: the reader processes), and the model inputs (that, plus JPEG decoding and preprocessing to 224 px in
the decode threads). N workers means N reader processes and N decode threads, as SEARCHCORE_WORKERS=N
gives an ingest. No model is loaded: only the encoder's preprocessing runs.

    python -m bench.bench_reader [--images 512] [--workers 1,2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, cast

from PIL import Image

from bench._common import jpeg_split, machine, mean_jpeg_kb, table, write_result
from searchcore.indexing.pipeline import prepared_batches
from searchcore.models.encoder import Encoder
from searchcore.models.preprocess import preprocess
from searchcore.sources.chinese_clip import split_source

RESOLUTION = 224


class Preprocessing:
    """What prepared_batches asks of an encoder: its input size and its preprocessing."""

    resolution = RESOLUTION

    @staticmethod
    def preprocess(image: Image.Image) -> Any:
        return preprocess(image, RESOLUTION)


def records_per_s(root: Any, workers: int) -> float:
    started = time.perf_counter()
    count = sum(r.data is not None for r in split_source(root, "bench", workers).records)
    return count / (time.perf_counter() - started)


def inputs_per_s(root: Any, workers: int, batch: int) -> float:
    started = time.perf_counter()
    source = split_source(root, "bench", workers)
    count = 0
    for prepared, _ in prepared_batches(source.records, lambda r: r.data or b"", cast(Encoder, Preprocessing()),
                                        on_bad=lambda *_: None, batch_size=batch, workers=workers,
                                        digest=lambda r: r.sha256):
        count += len(prepared)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--workers", default=f"1,2,{os.cpu_count()}")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2, help="runs per row, interleaved; the best is kept")
    args = parser.parse_args()
    started = machine()
    root = jpeg_split(args.images)
    counts = sorted({int(w) for w in args.workers.split(",") if w})
    best: dict[int, dict[str, float]] = {w: {"records": 0.0, "inputs": 0.0} for w in counts}
    for _ in range(args.repeat):  # interleaved, so a busy spell on a shared machine hits every row alike
        for w in counts:
            best[w]["records"] = max(best[w]["records"], records_per_s(root, w))
            best[w]["inputs"] = max(best[w]["inputs"], inputs_per_s(root, w, args.batch))
    rows = [{"workers": w, "records_per_s": best[w]["records"], "inputs_per_s": best[w]["inputs"],
             "inputs_vs_1_worker": best[w]["inputs"] / best[counts[0]]["inputs"]} for w in counts]
    print(table(["workers", "records img/s (read, base64, sha256)", "model inputs img/s (+ decode, preprocess)",
                 f"inputs vs {counts[0]} worker"],
                [[r["workers"], r["records_per_s"], r["inputs_per_s"], r["inputs_vs_1_worker"]] for r in rows]))
    print(write_result("reader", {"benchmark": "reader", "images": args.images, "mean_jpeg_kb": mean_jpeg_kb(root),
                                  "rows": rows, "machine": started}))


if __name__ == "__main__":
    main()
