"""The `searchcore` command line: parses arguments, calls the engine, prints, exits with a code.

Exit status: 0 done (an ingest that skipped bad records included), 1 user or
data error (message on stderr), 2 wrong usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config import Settings, add_arguments
from .errors import SearchcoreError

log = logging.getLogger(__name__)
Command = Callable[[argparse.Namespace, Settings], int]
COMMANDS: dict[str, Command] = {}


class UsageError(SearchcoreError):
    """Arguments that do not fit together; exits 2 like argparse does."""


def command(name: str) -> Callable[[Command], Command]:
    """Register a subcommand handler."""
    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
        return fn
    return register


def _engine(settings: Settings) -> Any:
    from .engine import build_engine

    return build_engine(settings)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=None if args.json else 2) if args.json else text)


@command("ingest")
def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    """Ingest a Chinese-CLIP split, a feature file or an image folder."""
    from tqdm import tqdm

    engine = _engine(settings)
    bar = tqdm(unit="img", file=sys.stderr, disable=None, dynamic_ncols=True)

    def progress(done: int, total: int | None) -> None:
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        report = engine.ingest(args.path, split=args.split, features=args.features, progress=progress)
    finally:
        bar.close()
        engine.close()
    lines = [f"library {report.library}: {report.added} added, {report.present} already present, "
             f"{len(report.bad)} bad ({report.seconds:.1f}s)"]
    lines += [f"  {b.file}:{b.line}: {b.reason}" for b in report.bad[:50]]
    if len(report.bad) > 50:
        lines.append(f"  ... and {len(report.bad) - 50} more (use --json for all)")
    _emit(args, report.to_json(), "\n".join(lines))
    return 0


@command("search")
def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    """Search a library by text or by an image file."""
    if (args.text is None) == (args.image is None):
        raise UsageError("give either a text query or --image FILE")
    engine = _engine(settings)
    try:
        if args.image is not None:
            try:
                data = Path(args.image).read_bytes()
            except OSError as exc:
                raise SearchcoreError(f"cannot read {args.image}: {exc.strerror}") from None
            results = engine.search_image(data, args.top_k)
        else:
            results = engine.search_text(args.text, args.top_k)
    finally:
        engine.close()
    text = "\n".join(f"{r.rank:3d}  {r.score:.4f}  {r.image_id}  {' / '.join(r.captions[:2])}" for r in results)
    _emit(args, [r.to_json() for r in results], text or "no results")
    return 0


@command("info")
def cmd_info(args: argparse.Namespace, settings: Settings) -> int:
    """Show a library's counts, model, dimension and backends."""
    engine = _engine(settings)
    try:
        info = engine.info(runtime=True)
    finally:
        engine.close()
    data = info.to_json()
    _emit(args, data, "\n".join(f"{k}: {v}" for k, v in data.items()))
    return 0


@command("libraries")
def cmd_libraries(args: argparse.Namespace, settings: Settings) -> int:
    """List every library."""
    engine = _engine(settings)
    try:
        infos = [i.to_json() for i in engine.libraries()]
    finally:
        engine.close()
    text = "\n".join(f"{i['library']}: {i['count']} images, {i['model']} ({i['dim']}-d)" for i in infos)
    _emit(args, infos, text or "no libraries")
    return 0


@command("drop")
def cmd_drop(args: argparse.Namespace, settings: Settings) -> int:
    """Delete a library from both stores."""
    engine = _engine(settings)
    try:
        engine.drop()
    finally:
        engine.close()
    _emit(args, {"library": settings.library, "dropped": True}, f"dropped library {settings.library}")
    return 0


@command("check")
def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """Compare the image store with the vector collection; --repair fixes mismatches."""
    engine = _engine(settings)
    try:
        report = engine.check(repair=args.repair)
    finally:
        engine.close()
    text = (f"library {report.library}: {report.images} images, {report.vectors} vectors; "
            f"{len(report.missing_vectors)} images without a vector, {len(report.orphan_vectors)} vectors "
            f"without an image" + ("; repaired" if report.repaired else ""))
    _emit(args, report.to_json(), text)
    return 0 if report.consistent or report.repaired else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="searchcore", description="Chinese text-to-image search (以文搜图)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and details")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        add_arguments(p)
        return p

    p = add("ingest", "ingest a Chinese-CLIP split, a feature file or a folder of images")
    p.add_argument("path", help="dataset folder, image folder, or {split}_imgs.tsv")
    p.add_argument("--split", help="split name (train, valid, test, ...)")
    p.add_argument("--features", help="a feature jsonl ({split}_imgs.img_feat.jsonl) to ingest without encoding")
    p = add("search", "search a library by text or by image")
    p.add_argument("text", nargs="?", help="the description to search for")
    p.add_argument("--image", help="search by this image file instead")
    p.add_argument("--top-k", default="10", help="number of results, 1-100 (default 10)")
    add("info", "show a library's counts, model and backends")
    add("libraries", "list every library")
    add("drop", "delete a library")
    p = add("check", "report (and with --repair fix) mismatches between the image store and the vectors")
    p.add_argument("--repair", action="store_true", help="re-encode missing vectors and remove orphans")
    for extend in _extensions():
        extend(sub, add)
    return parser


def _extensions() -> list[Callable[..., None]]:
    """Subcommands other modules add (evaluation, distributed ingest)."""
    found = []
    for module in ("searchcore.evaluate", "searchcore.distributed"):
        try:
            mod = __import__(module, fromlist=["add_commands"])
        except ImportError:
            continue
        found.append(mod.add_commands)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `searchcore` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        settings = Settings.from_args(args)
        return COMMANDS[args.command](args, settings)
    except SearchcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: a message, never a traceback
        if args.verbose:
            log.exception("unexpected error")
        print(f"error: unexpected {type(exc).__name__}: {exc} (run with -v for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: extensions register their commands there.
    from searchcore.cli import main as package_main

    sys.exit(package_main())
