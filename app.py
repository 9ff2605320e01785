"""Launch 以文搜图: the Gradio UI and the JSON API on one server, over one engine built here.

    python app.py --model demo/tiny_clip.pt --library demo
    python app.py --host 0.0.0.0 --auth admin:secret          # reachable from the network, writes need a login
    python app.py --share --read-only                         # a public demo link, search only

Every engine setting is also a flag (--milvus-uri, --db-url, ...) and a SEARCHCORE_* variable.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from searchcore.config import Settings, add_arguments
from searchcore.errors import SearchcoreError
from searchcore.web.auth import Access, read_credentials


def build_parser() -> argparse.ArgumentParser:
    """The app's flags plus one flag per engine setting."""
    parser = argparse.ArgumentParser(description="Chinese text-to-image search (以文搜图): web UI and JSON API")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this "
                        "machine only; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link; ingest and "
                        "drop stay disabled unless --auth is given")
    parser.add_argument("--auth", action="append", default=[], metavar="USER:PASS",
                        help="require this login (repeatable); @FILE reads one user:pass a line")
    parser.add_argument("--auth-file", action="append", default=[], metavar="FILE",
                        help="file of user:pass lines, like --auth @FILE")
    parser.add_argument("--read-only", action="store_true", help="disable ingest and drop")
    parser.add_argument("--watch", metavar="FOLDER", help="keep the library in step with this folder of images while "
                        "the app runs: new and changed files are ingested, deleted ones removed")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs, and the libraries' info logs")
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, build the engine once, serve until interrupted."""
    args = build_parser().parse_args(argv)
    # Imported after parsing, so --help answers without loading Gradio and torch.
    from searchcore.engine import build_engine
    from searchcore.web.api import RequestIdFilter, serve
    from searchcore.web.ui import layout

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])
    for name in ("searchcore", "app"):  # our own request and ingest lines always; libraries' chatter with -v
        logging.getLogger(name).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        settings = Settings.from_args(args)
        access = Access(users=read_credentials([*args.auth, *("@" + f for f in args.auth_file)]),
                        read_only=args.read_only, share=args.share)
        engine = build_engine(settings, preload_encoder=True)  # the model loads while the stores open
    except SearchcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    watcher = None
    try:
        # Load the model now: a bad --model fails here, and the first search is not slow.
        encoder = engine.encoder
        logging.getLogger("app").info("model %s (%s on %s)", encoder.name, encoder.backend, encoder.device)
        if args.watch:  # in this process, since it holds Milvus Lite's file lock
            from searchcore.jobs.watch import FolderWatcher

            watcher = FolderWatcher(engine, args.watch)
            watcher.start()
        serve(engine, access, host=args.host, port=args.port, mount_ui=layout.mount)
    except SearchcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if watcher is not None:
            watcher.stop()
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
