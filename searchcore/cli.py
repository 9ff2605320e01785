"""The `searchcore` command line: parses arguments, calls the engine, prints, exits with a code.

Exit status: 0 done (an ingest that skipped bad records included), 1 user or
data error (message on stderr), 2 wrong usage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from searchcore.config import DUPLICATE_THRESHOLD, Settings, add_arguments
from searchcore.duplicates import find_duplicates, parse_threshold
from searchcore.engine import Engine, build_engine
from searchcore.errors import SearchcoreError, UsageError
from searchcore.evaluate import MIN_APPROX_OVERLAP, Fill, evaluate, extract, predict, write_predictions
from searchcore.indexing.ingest import Progress
from searchcore.indexing.report import IngestReport
from searchcore.jobs.distributed import BATCH_ROWS, ingest_ray
from searchcore.models.encoder import Encoder, load_encoder
from searchcore.query import Understood, understand
from searchcore.records import SHOWN_BAD_RECORDS, BadRecord
from searchcore.search import MAX_TOP_K, MODES, SORTS, VideoMoment, parse_top_k
from searchcore.sources.chinese_clip import choose_split
from searchcore.sources.videos import DEFAULT_INTERVAL
from searchcore.stores.factory import Stores
from searchcore.stores.filters import Filters

log = logging.getLogger(__name__)
T = TypeVar("T")
Command = Callable[[argparse.Namespace, Settings], int]
COMMANDS: dict[str, Command] = {}
AUTO_INGEST = ("An empty or missing library is first filled from the split (as `searchcore ingest DATASET --split S`); "
               "a library must hold exactly the split's images, since Chinese-CLIP ranks among those only. The "
               "split's bad image records (which ingest reports and skips) are skipped and reported.")


def command(name: str) -> Callable[[Command], Command]:
    """Register a subcommand handler."""
    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
        return fn
    return register


def _engine(settings: Settings, *, one_query: bool = False, snapshot: bool = False) -> Engine:
    # One query in a fresh process: load the model while the stores open, and skip Lite's in-process copy
    # (loading it would take longer than the query and compete with it for the CPU); snapshot: answer it
    # from the library's search snapshot when that is current (stores/snapshot.py).
    return build_engine(settings, preload_encoder=one_query, exact_copy=not one_query, one_question=snapshot)


def _on_split(args: argparse.Namespace, settings: Settings,
              run: Callable[[Callable[[], Encoder], Stores, str, Fill], T]) -> tuple[str, T]:
    """The dataset's split (args.split, or the one it has), and what run gives for it with the engine open: the
    library's encoder (loaded when asked for), its stores, the split, and the ingest that fills an empty library
    from it."""
    split = choose_split(args.dataset, args.split)
    with _engine(settings) as engine:
        library = settings.library
        return split, run(lambda: engine.encoder_for(library), engine.stores, split,
                          lambda: engine.ingest(args.dataset, split=split, library=library))


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=None if args.json else 2) if args.json else text)


def _bad_lines(bad: Sequence[BadRecord], verb: str = "") -> list[str]:
    """The first bad records, one line each ("  [verb ]file:line: reason"), and how many more there are."""
    lines = [f"  {verb}{b.file}:{b.line}: {b.reason}" for b in bad[:SHOWN_BAD_RECORDS]]
    if len(bad) > SHOWN_BAD_RECORDS:
        lines.append(f"  ... and {len(bad) - SHOWN_BAD_RECORDS} more (use --json for all)")
    return lines


def _ingested(args: argparse.Namespace, report: IngestReport) -> int:
    _emit(args, report.to_json(), "\n".join([report.summary(), *_bad_lines(report.bad)]))
    return 0


@contextlib.contextmanager
def _progress_bar() -> Iterator[Progress]:
    """An ingest's progress as a bar on stderr (shown only on a terminal)."""
    from tqdm import tqdm

    bar = tqdm(unit="img", file=sys.stderr, disable=None, dynamic_ncols=True)

    def progress(done: int, total: int | None) -> None:
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        bar.close()


@command("ingest")
def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    """Ingest a Chinese-CLIP split, a feature file or an image folder."""
    with _engine(settings) as engine, _progress_bar() as progress:
        report = engine.ingest(args.path, split=args.split, features=args.features, progress=progress,
                               sync=args.sync, ocr=args.ocr, allow_mass_removal=args.allow_mass_removal,
                               frame_interval=args.frame_interval)
    return _ingested(args, report)


@command("ingest-ray")
def cmd_ingest_ray(args: argparse.Namespace, settings: Settings) -> int:
    """Ingest a tsv split with encoder workers on Ray."""
    with _progress_bar() as progress:
        report = ingest_ray(settings, args.path, split=args.split, ray_address=args.ray_address,
                            num_workers=args.num_workers, batch_rows=args.batch_rows, bulk_dir=args.bulk_dir,
                            progress=progress)
    return _ingested(args, report)


@command("search")
def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    """Search a library by text or by an image file."""
    if (args.text is None) == (args.image is None):
        raise UsageError("usage_query_or_image")
    if args.image is not None and args.mode not in (None, "semantic"):
        raise UsageError("usage_image_semantic_only")
    filters = Filters.parse(args.folder, args.since, args.until, args.media)
    page = {"offset": args.offset, "filters": filters or None}
    reading = None
    # keyword and hybrid asked for read Lite's keyword index: the snapshot serves a semantic (or the default) search
    with _engine(settings, one_query=True, snapshot=args.mode in (None, "semantic")) as engine:
        if args.image is not None:
            try:
                data = Path(args.image).read_bytes()
            except OSError as exc:
                raise SearchcoreError("image_file_unreadable", path=args.image, reason=exc.strerror) from None
            results = engine.search_image(data, args.top_k, **page)
        else:
            results = engine.search_text(args.text, args.top_k, mode=args.mode, min_similarity=args.min_similarity,
                                         exclude=args.exclude, literal=args.literal, cutoff=args.cutoff,
                                         sort=args.sort, collapse=args.collapse, **page)
            reading = None if args.json or args.literal else engine.understand(args.text, exclude=args.exclude)
    lines = [f"understood as: {understood_line(reading)}"] if reading and (reading.dated or reading.phrases) else []
    lines += [f"{r.rank:3d}  similarity {_score(r.similarity)}  keyword {_score(r.keyword_score)}  {r.image_id}  "
              f"{_moment(r.video) if r.video is not None else ' / '.join(r.captions[:2]) or r.path}"
              f"{'  [text match]' if r.text_match else ''}{f'  (+{len(r.similar)} similar)' if r.similar else ''}"
              for r in results]
    if args.min_similarity not in (None, ""):
        lines.append(f"{len(results)} results with similarity ≥ {args.min_similarity}")
    _emit(args, [r.to_json() for r in results], "\n".join(lines) or "no results")
    return 0


@command("understand")
def cmd_understand(args: argparse.Namespace, settings: Settings) -> int:
    """Show how search reads a query: the text to encode, the dates, the quoted words and the excluded ones."""
    reading = understand(args.query)
    _emit(args, reading.to_json(), understood_line(reading))
    return 0


def understood_line(reading: Understood) -> str:
    """2025-06-01 – 2025-08-31 · 海边的日落 · "生日快乐" · -狗"""
    parts = [f"{reading.since} – {reading.until}"] if reading.dated else []
    parts += [reading.text] if reading.text and reading.text != " ".join(reading.phrases) else []
    parts += [f'"{p}"' for p in reading.phrases] + [f"-{w}" for w in reading.exclude]
    return " · ".join(parts)


def _moment(video: VideoMoment) -> str:
    return f"▶ {video.path} {_clock(video.start)}–{_clock(video.end)}"


def _clock(seconds: float) -> str:
    whole = int(seconds)
    if whole >= 3600:
        return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
    return f"{whole // 60}:{whole % 60:02d}"


def _score(value: float | None) -> str:
    return "   -  " if value is None else f"{value:.4f}"


@command("info")
def cmd_info(args: argparse.Namespace, settings: Settings) -> int:
    """Show a library's counts, model, dimension and backends."""
    with _engine(settings) as engine:
        info = engine.info(runtime=True)
    data = info.to_json()
    _emit(args, data, "\n".join(f"{k}: {v}" for k, v in data.items()))
    return 0


@command("libraries")
def cmd_libraries(args: argparse.Namespace, settings: Settings) -> int:
    """List every library."""
    with _engine(settings) as engine:
        infos = [i.to_json() for i in engine.libraries()]
    text = "\n".join(f"{i['library']}: {i['count']} images, {i['model']} ({i['dim']}-d)" for i in infos)
    _emit(args, infos, text or "no libraries")
    return 0


@command("drop")
def cmd_drop(args: argparse.Namespace, settings: Settings) -> int:
    """Delete a library from both stores."""
    with _engine(settings) as engine:
        engine.drop()
    _emit(args, {"library": settings.library, "dropped": True}, f"dropped library {settings.library}")
    return 0


@command("check")
def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """Compare the image store with the vector collection; --repair fixes mismatches."""
    with _engine(settings) as engine:
        report = engine.check(repair=args.repair)
    text = (f"library {report.library}: {report.images} images, {report.vectors} vectors; "
            f"{len(report.missing_vectors)} images without a vector, {len(report.orphan_vectors)} vectors "
            f"without an image" + ("; repaired" if report.repaired else ""))
    if report.missing_files or report.changed_files:
        text += (f"\n{len(report.missing_files)} folder pictures whose file is missing (ingest --sync removes them), "
                 f"{len(report.changed_files)} whose file changed (check --repair reads them again)")
        text += "".join(f"\n  missing: {path}" for path in report.missing_files[:SHOWN_BAD_RECORDS])
        text += "".join(f"\n  changed: {path}" for path in report.changed_files[:SHOWN_BAD_RECORDS])
    if report.copy_problem:
        text += f"\nthe in-process copy of the vectors differed from Milvus ({report.copy_problem}); it was reloaded"
    _emit(args, report.to_json(), text)
    return 0 if report.consistent or report.repaired else 1


@command("duplicates")
def cmd_duplicates(args: argparse.Namespace, settings: Settings) -> int:
    """List groups of near-identical images (resized, recompressed or lightly cropped copies), and of videos."""
    threshold = parse_threshold(args.threshold)  # a bad value fails before the stores open
    # It reads every vector itself; Lite's in-process copy would only compete.
    with build_engine(settings, exact_copy=False) as engine:
        groups = find_duplicates(engine.stores, settings.library, threshold)
    images = sum(len(g.images) for g in groups if not g.videos)
    videos = sum(len(g.videos) for g in groups)
    lines = [f"library {settings.library}: {len(groups)} groups of near-duplicates ({images} images"
             f"{f', {videos} videos' if videos else ''}) at threshold {threshold:g}"]
    lines += [f"  {len(g.videos)} videos, lowest score {g.min_score:.4f}: "
              + "  ".join(f"{v.path} ({v.video_id})" for v in g.videos) if g.videos else
              f"  {len(g.images)} images, lowest score {g.min_score:.4f}: {' '.join(map(str, g.images))}"
              for g in groups]
    _emit(args, [g.to_json() for g in groups], "\n".join(lines))
    return 0


@command("watch")
def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    """Keep a library in step with an image folder until Ctrl-C; one summary line per re-scan."""
    import signal
    import threading

    from searchcore.jobs.watch import FolderWatcher

    if not settings.is_milvus_server:
        raise SearchcoreError("watch_needs_server", path=args.folder)

    def report(done: IngestReport) -> None:
        _emit(args, done.to_json(), done.summary())
        sys.stdout.flush()

    with _engine(settings) as engine:
        watcher = FolderWatcher(engine, args.folder, debounce=args.debounce, on_report=report)
        stopped = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stopped.set())  # a service manager's stop ends it too
        try:
            watcher.start()
            while not stopped.wait(1):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            watcher.stop()
    return 0


@command("ocr")
def cmd_ocr(args: argparse.Namespace, settings: Settings) -> int:
    """Read the words in every picture of a library that OCR has not read yet (no image is encoded again)."""
    with _engine(settings) as engine, _progress_bar() as progress:
        report = engine.ocr(progress=progress)
    _emit(args, report.to_json(), "\n".join([report.summary(), *_bad_lines(report.bad)]))
    return 0


@command("migrate")
def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Bring a library made by an older version up to date: folder and date fields (its vectors are kept), and
    thumbnails instead of stored originals for its folder pictures (their files stay where they are)."""
    with _engine(settings) as engine:
        done = engine.migrate()
        thumbnails = engine.migrate_originals()
    lines = [f"library {settings.library} migrated: folder, date and media filters and videos now work on it"] \
        if done else []
    if thumbnails:
        lines.append(f"library {settings.library}: {thumbnails} stored originals of folder pictures replaced by "
                     "thumbnails (the originals stay in their files); the image store gave the space back")
    text = "\n".join(lines) or f"library {settings.library} is up to date; nothing to do"
    shape: dict[str, Any] = {"library": settings.library, "migrated": done}
    if thumbnails:  # only libraries made before thumbnails have this step
        shape["thumbnails"] = thumbnails
    _emit(args, shape, text)
    return 0


@command("relocate")
def cmd_relocate(args: argparse.Namespace, settings: Settings) -> int:
    """Record that a library's folder moved to another disk or mount point (nothing is encoded again)."""
    with _engine(settings) as engine:
        moved = engine.relocate(args.new_root, old_root=args.old_root)
    _emit(args, {"library": settings.library, "files": moved, "root": args.new_root},
          f"library {settings.library}: {moved} files now recorded under {args.new_root}; run searchcore ingest "
          f"{args.new_root} to pick up any change")
    return 0


@command("predict")
def cmd_predict(args: argparse.Namespace, settings: Settings) -> int:
    """Write cn_clip-format top-k predictions for every text of a split."""
    split, predictions = _on_split(args, settings, lambda encoder, stores, split, fill: predict(
        encoder, stores, args.dataset, split, args.top_k, library=settings.library, fill=fill))
    path = write_predictions(predictions, args.output or Path(args.dataset) / f"{split}_predictions.jsonl")
    _emit(args, {"output": str(path), "texts": len(predictions), "top_k": parse_top_k(args.top_k)},
          f"wrote {len(predictions)} predictions to {path}")
    return 0


@command("evaluate")
def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    """Print text→image and image→text recall; with --exact, Milvus's agreement with brute force."""
    split, result = _on_split(args, settings, lambda encoder, stores, split, fill: evaluate(
        encoder, stores, args.dataset, split, library=settings.library, exact=args.exact, fill=fill))
    t, i = result.text_to_image, result.image_to_text
    lines = [f"library {result.library}, split {split}: {result.texts} texts, {result.images} images, "
             f"index {result.index}",
             f"text→image  R@1 {t.r1:6.2f}  R@5 {t.r5:6.2f}  R@10 {t.r10:6.2f}  mean {t.mean:6.2f}",
             f"image→text  R@1 {i.r1:6.2f}  R@5 {i.r5:6.2f}  R@10 {i.r10:6.2f}  mean {i.mean:6.2f}"]
    if result.exact_overlap_at_10 is not None:
        lines.append(f"overlap@10 with exact search: {result.exact_overlap_at_10:.4f}"
                     + ("" if result.exact_ok else "  (below what this index must reach)"))
    _emit(args, result.to_json(), "\n".join(lines + _bad_lines(result.bad, "skipped ")))
    return 0 if result.exact_ok else 1


@command("extract")
def cmd_extract(args: argparse.Namespace, settings: Settings) -> int:
    """Write cn_clip-format image and text feature files for a split."""
    split = choose_split(args.dataset, args.split)
    report = extract(load_encoder(settings), args.dataset, split, args.output_dir)
    lines = [f"wrote {report.images} image features to {report.image_features}",
             f"wrote {report.texts} text features to {report.text_features}"]
    _emit(args, report.to_json(), "\n".join(lines + _bad_lines(report.bad, "skipped ")))
    return 0


@command("reindex")
def cmd_reindex(args: argparse.Namespace, settings: Settings) -> int:
    """Move a library to another model: encode its pictures again beside the old collection, then switch."""
    if args.model is None:
        raise UsageError("usage_reindex_model")
    with _engine(settings) as engine, _progress_bar() as progress:
        report = engine.reindex(settings.model, progress=progress)
    _emit(args, report.to_json(), "\n".join([report.summary(), *_bad_lines(report.bad)]))
    return 0


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
    p.add_argument("--sync", action="store_true", help="for a folder: also remove the images of files that are gone "
                   "(without it nothing is deleted and the summary counts them as missing); it refuses to remove all "
                   "of them, or more than half, at once")
    p.add_argument("--allow-mass-removal", action="store_true", help="with --sync: remove them even when that is "
                   "all of the folder's pictures or more than half (check that the drive is mounted first)")
    p.add_argument("--ocr", action="store_true", help="also read the words in each picture (shop signs, "
                   "screenshots, slides) for keyword search; about 15 pictures/s on 2 cores")
    p.add_argument("--frame-interval", type=float, default=DEFAULT_INTERVAL, help="for a folder's videos: "
                   f"seconds between sampled frames (default {DEFAULT_INTERVAL:g})")
    p = add("search", "search a library by text or by image")
    p.add_argument("text", nargs="?", help="the description to search for")
    p.add_argument("--image", help="search by this image file instead")
    p.add_argument("--top-k", default="10", help=f"number of results, 1-{MAX_TOP_K} (default 10)")
    p.add_argument("--offset", default="0", help="skip this many results first (paging; offset + top-k ≤ "
                   f"{MAX_TOP_K})")
    p.add_argument("--folder", help="only images under this folder of the ingested folder, e.g. 2024/旅行")
    p.add_argument("--since", help="only images taken on or after this date (YYYY-MM-DD; EXIF, else file time)")
    p.add_argument("--until", help="only images taken on or before this date (YYYY-MM-DD)")
    p.add_argument("--media", choices=("image", "video", "all"), default="all", help="only pictures, only moments "
                   "of videos, or both (default)")
    p.add_argument("--mode", choices=MODES, help="semantic (by meaning), keyword (by the words in captions and "
                   "pictures) or hybrid (pictures whose words hold the query first, then by meaning); default: "
                   "hybrid when the library has text, else semantic")
    p.add_argument("--min-similarity", help="leave out images whose similarity (cosine) to the query is below "
                   "this, from -1 to 1 (see the README for values that suit the model)")
    p.add_argument("--exclude", help="leave out images whose captions or words hold one of these words and push "
                   "down those that look like them (space- or comma-separated); `-词` in the query does the same")
    p.add_argument("--literal", action="store_true", help="search the query as typed: no quoted words that must "
                   "appear, no time words read as dates (`-词` still excludes)")
    p.add_argument("--cutoff", choices=("auto",), help="auto: only the hits above a cut chosen from this query's "
                   "own similarities (the largest drop; see the README)")
    p.add_argument("--sort", choices=SORTS, default="relevance", help="order the hits returned by relevance "
                   "(default), or by date taken, newest or oldest first (hits without a date last)")
    p.add_argument("--collapse", action="store_true", help="fold near-identical pictures (bursts, resized or "
                   f"recompressed copies: cosine ≥ {DUPLICATE_THRESHOLD}, as `duplicates`) into the best-ranked one")
    p = add("understand", "show how a search reads a query: quoted words, exclusions and Chinese time words "
                          "(去年夏天, 上个月, 最近三天) as dates, relative to today")
    p.add_argument("query", help="the query, e.g. 去年夏天海边的日落")
    add("info", "show a library's counts, model and backends")
    add("libraries", "list every library")
    add("drop", "delete a library")
    add("reindex", "move a library to another model (--model M): its pictures are encoded again beside the old "
                   "collection, which keeps answering searches, then the library switches in one step; run it again "
                   "after an interruption to finish without starting over")
    add("ocr", "read the words in the pictures of a library (for keyword search) without encoding them again")
    add("migrate", "bring a library made by an older version up to date: folder and date fields (vectors are "
                   "kept), thumbnails instead of stored originals of folder pictures")
    p = add("relocate", "record that the library's folder moved to another disk or mount point")
    p.add_argument("new_root", help="the folder's new place")
    p.add_argument("--from", dest="old_root", help="the old folder, when the library has files from several")
    p = add("check", "report (and with --repair fix) mismatches between the image store and the vectors")
    p.add_argument("--repair", action="store_true", help="re-encode missing vectors and remove orphans")
    p = add("duplicates", "list groups of near-identical images (resized, recompressed or cropped copies) and of "
                          "videos (copies of one video, compared by their frame sequences)")
    p.add_argument("--threshold", default=str(DUPLICATE_THRESHOLD),
                   help=f"link two images whose vectors' cosine is at least this, in (0, 1] (default "
                        f"{DUPLICATE_THRESHOLD})")
    p = add("watch", "keep a library in step with a folder of images until Ctrl-C (needs a Milvus server URI; "
                     "with a Lite file use python app.py --watch FOLDER)")
    p.add_argument("folder", help="the folder of images to follow: new and changed files are ingested, deleted "
                   "ones removed")
    p.add_argument("--debounce", type=float, default=2.0, help="seconds without changes before a re-scan (default 2)")
    p = add("predict", "write Chinese-CLIP top-k predictions ({text_id, image_ids} lines) for a split's texts")
    p.description = (p.description or "") + ". The file is what `python -m cn_clip.eval.evaluation " \
        "{split}_texts.jsonl predictions.jsonl out.json` scores. " + AUTO_INGEST
    p.add_argument("dataset", help="Chinese-CLIP dataset folder ({split}_imgs.tsv + {split}_texts.jsonl)")
    p.add_argument("--split", help="split name (valid, test, ...)")
    p.add_argument("--top-k", default="10", help="images per text (cn_clip's scorer needs 10; default 10)")
    p.add_argument("--output", help="prediction file (default DATASET/{split}_predictions.jsonl)")
    p = add("evaluate", "text→image and image→text recall@1/5/10 of a library on a split, as Chinese-CLIP scores it")
    p.description = (p.description or "") + ". " + AUTO_INGEST + (
        f" --exact also compares Milvus's top-10 with brute force over the stored vectors and exits 1 when the "
        f"overlap is below 1.0 on a FLAT index or below {MIN_APPROX_OVERLAP} on HNSW/IVF_FLAT (on a server, for "
        f"some seconds after an ingest, Milvus searches new data through an interim index of lower recall).")
    p.add_argument("dataset", help="Chinese-CLIP dataset folder")
    p.add_argument("--split", help="split name (valid, test, ...)")
    p.add_argument("--exact", action="store_true", help="also report overlap@10 with exact brute-force search")
    p = add("extract", "write a split's image and text features in cn_clip's extract_features.py format")
    p.description = (p.description or "") + (". Writes {split}_imgs.img_feat.jsonl and {split}_texts.txt_feat.jsonl; "
                                             "`searchcore ingest DATASET --split S --features "
                                             "DATASET/S_imgs.img_feat.jsonl` reads them back without encoding.")
    p.add_argument("dataset", help="Chinese-CLIP dataset folder")
    p.add_argument("--split", help="split name (valid, test, ...)")
    p.add_argument("--output-dir", help="folder for the feature files (default: the dataset folder)")
    p = add("ingest-ray", "ingest a Chinese-CLIP tsv split with encoder workers on a Ray cluster (needs ray[data])")
    p.add_argument("path", help="dataset folder or {split}_imgs.tsv")
    p.add_argument("--split", help="split name (train, valid, test, ...)")
    p.add_argument("--ray-address", help="Ray cluster to join (auto, ray://head:10001); default: start Ray here")
    p.add_argument("--num-workers", type=int, help="encoder workers (default: one per GPU, else CPU cores - 1)")
    p.add_argument("--batch-rows", type=int, default=BATCH_ROWS,
                   help=f"tsv lines per worker call (default {BATCH_ROWS})")
    p.add_argument("--bulk-dir", help="write vectors as NumPy files here and have Milvus bulk-insert them; the "
                   "Milvus server must read this path (standalone with local storage, same host or shared disk)")
    return parser


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
    sys.exit(main())
