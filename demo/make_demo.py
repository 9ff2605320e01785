"""Build the sample library `demo` offline: a synthetic Chinese-CLIP dataset, ingested with the tiny model.

Usage: python -m demo.make_demo [--images 180] [--dataset data/demo_dataset] [--model demo/tiny_clip.pt] ...
Then:  python app.py --model demo/tiny_clip.pt --library demo
Any engine flag (--milvus-uri, --db-url, ...) or SEARCHCORE_* variable chooses the stores, as for app.py.
Re-running is cheap: the dataset is written once, and a library that already holds it is left alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from demo.sample_data import write_dataset
from searchcore.config import Settings, add_arguments
from searchcore.engine import build_engine
from searchcore.errors import SearchcoreError

ROOT = Path(__file__).resolve().parents[1]
SPLIT = "valid"
SIZE = (160, 120)


def main(argv: list[str] | None = None) -> int:
    """Write the dataset if missing, then ingest it unless the library already holds it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=180, help="images in the sample dataset (default 180)")
    parser.add_argument("--dataset", default="data/demo_dataset", help="where to write the dataset")
    add_arguments(parser)
    parser.set_defaults(model=str(ROOT / "demo" / "tiny_clip.pt"), library="demo")
    args = parser.parse_args(argv)

    dataset = Path(args.dataset)
    if not (dataset / f"{SPLIT}_imgs.tsv").is_file():
        write_dataset(dataset, SPLIT, args.images, seed=7, size=SIZE, first_id=100_000, lmdb=False)
        print(f"wrote {args.images} images to {dataset}")
    try:
        settings = Settings.from_args(args)
        engine = build_engine(settings)
        try:
            held = engine.info().count
            if held >= args.images:
                print(f"library {settings.library} already holds {held} images; nothing to do")
                return 0
            report = engine.ingest(dataset, split=SPLIT)
        finally:
            engine.close()
    except SearchcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"library {report.library}: {report.added} added, {report.present} already present, "
          f"{len(report.bad)} bad")
    return 0


if __name__ == "__main__":
    sys.exit(main())
