"""Test driver: an ingest that SIGKILLs its own process at a chosen point, to test recovery from a crash.

    python tests/ingest_killed_at.py POINT:N DATASET [--split S] [--sync] [--parallel-reader]
    python tests/ingest_killed_at.py thumbnails:N --migrate
    python tests/ingest_killed_at.py build:N --reindex MODEL

runs the ingest `searchcore ingest DATASET --split S` runs, with the settings of the SEARCHCORE_*
variables, over the engine's real stores wrapped so that the Nth time the ingest reaches POINT the
process kills itself with SIGKILL (no cleanup, no flush, as a power cut or the OOM killer would).
--parallel-reader reads the split in SEARCHCORE_WORKERS processes however small it is.

    batch         a batch is encoded and none of it written yet (before its images are put)
    after_images  a batch's images are written, its vectors not
    flush         everything is written, the final flush of the vectors not done
    remove_images a --sync run has deleted the gone images' vectors, not yet their images
    forget_files  a --sync run has deleted the gone images from both stores, not yet the file records
    thumbnails    `searchcore migrate` is about to replace a batch of stored originals by thumbnails
    build         (--reindex M) a batch of the new collection is about to be written
    switch        (--reindex M) every picture is in the new collection, the library not switched yet
    switched      (--reindex M) the library switched to the new collection, the old one not dropped yet
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.sources import chinese_clip

POINTS = ("batch", "after_images", "flush", "remove_images", "forget_files", "thumbnails", "build", "switch",
          "switched")


class KillAt:
    """SIGKILLs this process the Nth time `reach(point)` is called with its point."""

    def __init__(self, spec: str) -> None:
        point, _, count = spec.partition(":")
        if point not in POINTS:
            raise SystemExit(f"unknown kill point {point!r}; one of {', '.join(POINTS)}")
        self.point, self.count, self.hits = point, int(count or 1), 0

    def reach(self, point: str) -> None:
        if point == self.point:
            self.hits += 1
            if self.hits == self.count:
                os.kill(os.getpid(), signal.SIGKILL)


class Wrapped:
    """A store that behaves as the one it wraps, and lets subclasses reach kill points around some calls."""

    def __init__(self, store: Any, kill: KillAt) -> None:
        self._store = store
        self._kill = kill

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class KillingImageStore(Wrapped):
    def put_many(self, *args: Any, **kwargs: Any) -> Any:
        self._kill.reach("batch")  # ingest writes a batch's images first: nothing of it is written yet
        result = self._store.put_many(*args, **kwargs)
        self._kill.reach("after_images")
        return result

    def delete_many(self, *args: Any, **kwargs: Any) -> Any:
        self._kill.reach("remove_images")
        return self._store.delete_many(*args, **kwargs)

    def delete_files(self, *args: Any, **kwargs: Any) -> Any:
        self._kill.reach("forget_files")
        return self._store.delete_files(*args, **kwargs)

    def set_thumbnails(self, *args: Any, **kwargs: Any) -> Any:
        self._kill.reach("thumbnails")
        return self._store.set_thumbnails(*args, **kwargs)


class KillingVectorStore(Wrapped):
    def flush(self, *args: Any, **kwargs: Any) -> Any:
        self._kill.reach("flush")
        return self._store.flush(*args, **kwargs)

    def build_upsert(self, *args: Any, **kwargs: Any) -> Any:
        self._kill.reach("build")
        return self._store.build_upsert(*args, **kwargs)

    def switch(self, *args: Any, **kwargs: Any) -> Any:
        self._kill.reach("switch")
        result = self._store.switch(*args, **kwargs)
        self._kill.reach("switched")
        return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kill_at", help="POINT:N, e.g. after_images:3")
    parser.add_argument("path", nargs="?")
    parser.add_argument("--split")
    parser.add_argument("--sync", action="store_true")
    parser.add_argument("--parallel-reader", action="store_true")
    parser.add_argument("--migrate", action="store_true", help="run the thumbnail migration instead of an ingest")
    parser.add_argument("--reindex", metavar="MODEL", help="move the library to MODEL instead of an ingest")
    args = parser.parse_args(argv)
    if args.parallel_reader:
        chinese_clip.PARALLEL_MIN_BYTES = 0
    kill = KillAt(args.kill_at)
    engine = Engine(Settings.from_env())
    engine.images = KillingImageStore(engine.images, kill)  # type: ignore[assignment]
    engine.vectors = KillingVectorStore(engine.vectors, kill)  # type: ignore[assignment]
    try:
        if args.migrate:
            print(f"{engine.migrate_originals()} thumbnails")
        elif args.reindex:
            print(engine.reindex(args.reindex).summary())
        else:
            print(engine.ingest(args.path, split=args.split, sync=args.sync).summary())
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
