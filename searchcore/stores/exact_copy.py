"""An exact in-process copy of Milvus Lite libraries, searched with one matrix product.

A Milvus Lite search spends 91% of its time on per-row Python bookkeeping (docs/PERFORMANCE.md); the
same exact inner-product top-k over a float32 matrix takes a tenth of that. The copy is safe only on
Lite, whose file lock admits one process: every write passes through a MilvusVectorStore of this
process, which updates the copy of its file here. Milvus stays the store of record.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

log = logging.getLogger(__name__)

# Pages read from Milvus (for an ExactCopy: ids, vectors, attrs, video ids); the loader checks the event between
# pages and stops when set.
Loader = Callable[[threading.Event], Iterator[Any]]
# A filter over the copy's rows: (paths, taken, video ids) -> the rows that pass (the same rule Milvus applies).
Mask = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

# How far the copy's score of a unit vector may stray from Milvus Lite's: each float32 product may round
# differently (a few ulps of 1.0), and hits closer than this may come in either order.
SCORE_TOLERANCE = 1e-6
GATHER_SHARE = 8  # a filter keeping under 1/8 of the rows scores a copy of those rows; else every row is scored


class WriteOrder:
    """When each row of an in-process copy was written, as a number: equal scores go to the older row, and rows
    loaded from Milvus are older than any write seen while loading."""

    def __init__(self, first: int = 0) -> None:
        self._next_seq = first
        self._next_loaded = -(1 << 62)

    def take(self, loaded: bool) -> int:
        """The next number for a row written now, or loaded back from Milvus (loaded)."""
        if loaded:
            self._next_loaded += 1
            return self._next_loaded - 1
        self._next_seq += 1
        return self._next_seq - 1


def popped_rows(rows: dict[int, int], ids: Iterable[int]) -> Iterator[int]:
    """The row of each id that rows holds, removed from rows as it is yielded (the caller fills the hole)."""
    for image_id in ids:
        row = rows.pop(int(image_id), None)
        if row is not None:
            yield row


class ExactCopy:
    """One library's vectors as a float32 matrix; exact inner-product top-k with numpy.

    Results match Milvus Lite's FLAT search with the IP metric up to float32 rounding: the same ids in the
    same order, with scores within SCORE_TOLERANCE of Lite's. The products are the same, but not always
    summed in the same order: OpenBLAS picks its kernel by CPU (Zen, SkylakeX, Haswell ...) and by the
    shape of the batch, so a score can differ in its last bits between Lite and the copy, or between a
    query alone and the same query in a batch (by up to 1.8e-7 on a Zen 5 EPYC). Hits whose scores lie
    within SCORE_TOLERANCE of each other (near ties; two of a 1,500-deep ranking agreed to 2e-8) may
    therefore come in another order than Lite's. Exact ties (equal scores: duplicate vectors) go to the row
    written earlier, as Lite orders them across its segments and memtable; within one segment Lite leaves
    tied rows in no particular order.
    """

    def __init__(self, dim: int, capacity: int = 0) -> None:
        self.dim = dim
        self._ids = np.empty(capacity, dtype=np.int64)
        self._seqs = np.empty(capacity, dtype=np.int64)  # when each row was written: ties go to the older
        self._paths = np.empty(capacity, dtype=object)  # each row's relative path and taken time, for filters
        self._taken = np.zeros(capacity, dtype=np.int64)
        self._videos = np.zeros(capacity, dtype=np.int64)  # each row's video (0: a picture), for the media filter
        self._matrix = np.empty((capacity, dim), dtype=np.float32)
        self._rows: dict[int, int] = {}  # id -> row
        self._order = WriteOrder()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def upsert(self, ids: Sequence[int], vectors: np.ndarray, skip: set[int] | None = None,
               loaded: bool = False, attrs: Sequence[tuple[str, int]] | None = None,
               videos: Sequence[int] | None = None) -> None:
        """Insert or replace rows by id (ids in skip are left alone); loaded: rows read back from Milvus."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        attrs = attrs if attrs is not None else [("", 0)] * len(ids)
        videos = videos if videos is not None else [0] * len(ids)
        with self._lock:
            for image_id, vector, (path, taken), video in zip(ids, vectors, attrs, videos):
                image_id = int(image_id)
                if skip is not None and image_id in skip:
                    continue
                row = self._rows.get(image_id)
                if row is None:
                    row = len(self._rows)
                    if row == len(self._ids):
                        self._grow(row + 1)
                    self._rows[image_id] = row
                    self._ids[row] = image_id
                self._matrix[row] = vector
                self._paths[row], self._taken[row], self._videos[row] = path, taken, video
                self._seqs[row] = self._order.take(loaded)

    def load_page(self, page: tuple[list[int], np.ndarray, list[tuple[str, int]], list[int]], skip: set[int]) -> None:
        """Add a page (ids, vectors, attrs, video ids) read back from Milvus, leaving the ids in skip alone."""
        ids, vectors, attrs, videos = page
        self.upsert(ids, vectors, skip=skip, loaded=True, attrs=attrs, videos=videos)

    def delete(self, ids: Iterable[int]) -> None:
        """Remove rows by id (the last row moves into each hole)."""
        with self._lock:
            for row in popped_rows(self._rows, ids):
                last = len(self._rows)
                if row != last:
                    self._ids[row] = self._ids[last]
                    self._seqs[row] = self._seqs[last]
                    self._paths[row], self._taken[row] = self._paths[last], self._taken[last]
                    self._videos[row] = self._videos[last]
                    self._matrix[row] = self._matrix[last]
                    self._rows[int(self._ids[row])] = row

    def ids(self) -> np.ndarray:
        """Every id held, in row order."""
        with self._lock:
            return self._ids[:len(self._rows)].copy()

    def get(self, ids: Iterable[int]) -> dict[int, np.ndarray]:
        """Held vectors by id."""
        with self._lock:
            return {int(i): self._matrix[self._rows[int(i)]].copy() for i in ids if int(i) in self._rows}

    def search(self, queries: np.ndarray, top_k: int, mask: Mask | None = None) -> list[list[tuple[int, float]]]:
        """Inner-product top-k (id, score) per query, best first, among the rows the mask keeps."""
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.dim)
        with self._lock:  # writes move rows in place; a search must not see half a move
            n = len(self._rows)
            keep = None if mask is None else np.flatnonzero(mask(self._paths[:n], self._taken[:n], self._videos[:n]))
            if keep is not None and len(keep) * GATHER_SHARE < n:
                # the same product on the kept rows only: filtering costs no more than an unfiltered search
                scores = queries @ self._matrix[keep].T
                ids, seqs = self._ids[keep], self._seqs[keep]
            elif keep is not None and len(keep) < n:
                # most rows kept (a media filter keeps all pictures or all frames): copying them would cost more
                # than scoring every row, so every row is scored and the kept rows' scores taken
                scores = (queries @ self._matrix[:n].T)[:, keep]
                ids, seqs = self._ids[keep], self._seqs[keep]
            else:
                scores = queries @ self._matrix[:n].T  # the very product Lite's brute force takes
                ids, seqs = self._ids[:n].copy(), self._seqs[:n].copy()
        n = len(ids)
        k = min(top_k, n)
        if k <= 0:
            return [[] for _ in queries]
        out = []
        for row in scores:
            if k < n:
                kth = row[np.argpartition(row, n - k)[n - k:]].min()
                cand = np.flatnonzero(row >= kth)  # rows tied with the k-th too, so ties resolve by age
            else:
                cand = np.arange(n)
            best = cand[np.lexsort((seqs[cand], -row[cand]))][:k]
            out.append([(int(ids[j]), float(row[j])) for j in best])
        return out

    def columns(self) -> dict[str, np.ndarray]:
        """Every per-row array, cut to the rows held (a copy): what stores/snapshot.py saves."""
        with self._lock:
            n = len(self._rows)
            return {name: value[:n].copy() for name, value in vars(self).items() if isinstance(value, np.ndarray)}

    @classmethod
    def from_columns(cls, dim: int, columns: dict[str, np.ndarray]) -> ExactCopy:
        """A copy holding the rows `columns()` gave (read-only use: later writes continue its order)."""
        copy = cls(dim)
        if set(columns) != {name for name, value in vars(copy).items() if isinstance(value, np.ndarray)}:
            raise ValueError(f"columns {sorted(columns)} are not this copy's")
        for name, value in columns.items():
            setattr(copy, name, value)
        if copy._matrix.shape[1:] != (dim,) or len({len(v) for v in columns.values()}) > 1:
            raise ValueError("columns of different lengths or another dimension")
        copy._rows = {int(image_id): row for row, image_id in enumerate(copy._ids)}
        if len(copy._rows) != len(copy._ids):
            raise ValueError("an id appears twice")
        copy._order = WriteOrder(int(copy._seqs.max()) + 1 if len(copy._seqs) else 0)
        return copy

    def reserve(self, capacity: int) -> None:
        """Make room for this many rows in one allocation."""
        with self._lock:
            if capacity > len(self._ids):
                self._resize(capacity)

    def _grow(self, need: int) -> None:
        self._resize(max(need, len(self._ids) + len(self._ids) // 4, 1024))  # 1.25x: ingest appends in batches

    def _resize(self, capacity: int) -> None:
        self._ids = np.resize(self._ids, capacity)
        self._seqs = np.resize(self._seqs, capacity)
        self._paths = np.resize(self._paths, capacity)
        self._taken = np.resize(self._taken, capacity)
        self._videos = np.resize(self._videos, capacity)
        matrix = np.empty((capacity, self.dim), dtype=np.float32)
        matrix[:len(self._rows)] = self._matrix[:len(self._rows)]
        self._matrix = matrix


class Copy(Protocol):
    """What LiteCopies keeps: an in-process copy of one library's collection (ExactCopy, TextCopy)."""

    def __len__(self) -> int: ...
    def upsert(self, ids: Sequence[int], *args: Any, **kwargs: Any) -> None: ...
    def delete(self, ids: Iterable[int]) -> None: ...
    def reserve(self, capacity: int) -> None: ...
    def load_page(self, page: Any, skip: set[int]) -> None: ...


C = TypeVar("C", bound=Copy)


@dataclass
class _State(Generic[C]):
    copy: C
    ready: bool
    owner: int  # id() of the store whose client loads it
    touched: set[int] = field(default_factory=set)  # ids written while loading: the load must not overwrite them
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class LiteCopies(Generic[C]):
    """The copies of every library in one Milvus Lite file (of its vectors, or of its keyword index), shared by
    the stores of this process open on it.

    Stores hold `write_lock` around each Milvus write and the matching update here, so the copy sees writes
    in Milvus's order. A copy serves searches only once ready; until then searches go to Milvus.
    """

    def __init__(self) -> None:
        self.write_lock = threading.RLock()
        self._states: dict[str, _State[C]] = {}

    def ready(self, library: str) -> C | None:
        """The library's copy, when complete."""
        state = self._states.get(library)
        return state.copy if state is not None and state.ready else None

    def libraries(self) -> list[str]:
        """The libraries with a copy, complete or loading."""
        return list(self._states)

    def status(self, library: str) -> str:
        """'ready', 'loading' or 'absent'."""
        state = self._states.get(library)
        return "absent" if state is None else "ready" if state.ready else "loading"

    def create_empty(self, library: str, copy: C, owner: int) -> None:
        """A new, empty library: its copy (given empty) is complete from the start and grows with its upserts."""
        with self.write_lock:
            self.invalidate(library)
            self._states[library] = _State(copy, True, owner)

    def upserted(self, library: str, ids: Sequence[int], *args: Any, **kwargs: Any) -> None:
        """Apply an upsert Milvus has taken (the arguments of the copy's upsert)."""
        state = self._states.get(library)
        if state is not None:
            if not state.ready:
                state.touched.update(int(i) for i in ids)
            state.copy.upsert(ids, *args, **kwargs)

    def deleted(self, library: str, ids: Sequence[int]) -> None:
        """Apply a delete Milvus has taken."""
        state = self._states.get(library)
        if state is not None:
            if not state.ready:
                state.touched.update(int(i) for i in ids)
            state.copy.delete(ids)

    @contextlib.contextmanager
    def writing(self, library: str) -> Iterator[None]:
        """Hold the write lock around a write to Milvus and its update here; forget the library's copy when the
        write's outcome is unknown (it raised)."""
        with self.write_lock:
            try:
                yield
            except BaseException:
                self.invalidate(library)
                raise

    def invalidate(self, library: str) -> None:
        """Forget a library's copy (stopping its load): a drop, or a write whose outcome is unknown."""
        with self.write_lock:
            state = self._states.pop(library, None)
        if state is not None:
            state.cancel.set()

    def load_in_background(self, library: str, copy: C, load: Loader, owner: int,
                           size: Callable[[], int] = lambda: 0) -> None:
        """Start loading the library's copy (given empty) from Milvus, unless it is loaded or loading."""
        with self.write_lock:
            if library in self._states:
                return
            state = _State(copy, False, owner)
            self._states[library] = state
            state.thread = threading.Thread(target=self._load, args=(library, state, load, size), daemon=True,
                                            name=f"exact-copy-{library}")
            state.thread.start()

    def reload(self, library: str, copy: C, load: Loader, owner: int, size: Callable[[], int] = lambda: 0) -> bool:
        """Load the library's copy (given empty) again, in this thread; True when it completed."""
        with self.write_lock:
            self.invalidate(library)
            state = _State(copy, False, owner)
            self._states[library] = state
            return self._load(library, state, load, size)

    def stop(self, owner: int) -> None:
        """Stop and forget the loads a closing store runs (its client goes away with it)."""
        with self.write_lock:
            mine = [(name, s) for name, s in self._states.items() if s.owner == owner and not s.ready]
            for name, _ in mine:
                self.invalidate(name)
        for _, state in mine:
            if state.thread is not None and state.thread is not threading.current_thread():
                state.thread.join()

    def _load(self, library: str, state: _State[C], load: Loader, size: Callable[[], int]) -> bool:
        try:
            state.copy.reserve(size())
            for page in load(state.cancel):
                with self.write_lock:
                    if state.cancel.is_set():
                        return False
                    state.copy.load_page(page, state.touched)
            with self.write_lock:
                if state.cancel.is_set() or self._states.get(library) is not state:
                    return False
                state.ready = True
                state.touched = set()
            log.info("%s of library %s ready: %d rows", type(state.copy).__name__, library, len(state.copy))
            return True
        except Exception as exc:  # noqa: BLE001 - searches go on through Milvus, which reports its own failures
            log.warning("%s of library %s not loaded (%s); searching through Milvus", type(state.copy).__name__,
                        library, exc)
            with self.write_lock:
                if self._states.get(library) is state:
                    del self._states[library]
            return False
