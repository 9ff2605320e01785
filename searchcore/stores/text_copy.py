"""An in-process copy of a Milvus Lite keyword index, searched with BM25 as Lite scores it.

Milvus Lite 3 spends most of a BM25 search on per-row Python bookkeeping: on every search it walks every row of
the collection twice (newest version of each id, deletions) before it scores a posting, about 50 ms at 31,783
texts on a quiet 2-core machine (docs/PERFORMANCE.md). The copy keeps each term's postings in a dict and scores
the query's terms with numpy. Like the exact copy of vectors (stores/exact_copy.py) it is safe only on Lite,
whose file lock admits one process: every write passes through a TextIndex of this process, which updates the
copy of its file here (LiteCopies). Milvus stays the store of record; until the copy is loaded, and on a server,
searches go to Milvus.

Scores are Lite's BM25 (k1 1.5, b 0.75, IDF log(1 + (N - df + 0.5) / (df + 0.5)), each query term weighted by
how often the query holds it), over the terms Milvus was given (the hex words of the `terms` field). Lite scores
each sealed segment with that segment's own N, df and average length (a TODO in its source), so once a library
spans segments its scores depend on how its rows fell into them; the copy uses the whole library's statistics,
as a Milvus server does. On a library of one segment the two agree to float rounding, ids and scores
(tests/stores/test_text_copy.py).
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from searchcore.stores.exact_copy import WriteOrder, popped_rows

K1 = 1.5  # Milvus Lite's BM25 defaults (bm25_k1, bm25_b); the text index asks for no others
B = 0.75
# A filter over the copy's rows: (paths, taken) -> the rows that pass (the rule the Milvus expression applies).
Mask = Callable[[np.ndarray, np.ndarray], np.ndarray]
# A page read back from Milvus: ids, texts, terms (the hex words Milvus analysed), (path, taken) of each row.
Page = tuple[list[int], list[str], list[list[str]], list[tuple[str, int]]]


class TextCopy:
    """One library's keyword index in memory: each row's id, text, term counts, length, path and taken time,
    and for each term the rows holding it with how often."""

    def __init__(self) -> None:
        self._rows: dict[int, int] = {}  # id -> row
        self._ids: list[int] = []
        self._texts: list[str] = []
        self._terms: list[Counter[str]] = []
        self._paths: list[str] = []
        self._taken: list[int] = []
        self._seqs: list[int] = []  # when each row was written: equal scores go to the older
        self._lengths = np.zeros(0, dtype=np.float64)  # terms per row, as BM25 counts a document's length
        self._postings: dict[str, dict[int, int]] = {}  # term -> {row: how often the row holds it}
        self._total = 0  # the sum of the lengths
        self._order = WriteOrder()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def reserve(self, capacity: int) -> None:
        """Make room for this many rows' lengths in one allocation."""
        with self._lock:
            if capacity > len(self._lengths):
                self._lengths = np.resize(self._lengths, capacity)

    def load_page(self, page: Page, skip: set[int]) -> None:
        """Add a page read back from Milvus, leaving the ids in skip (written while loading) alone."""
        ids, texts, terms, attrs = page
        self.upsert(ids, texts, terms, attrs, skip=skip, loaded=True)

    def upsert(self, ids: Sequence[int], texts: Sequence[str], terms: Sequence[Sequence[str]],
               attrs: Sequence[tuple[str, int]], *, skip: set[int] | None = None, loaded: bool = False) -> None:
        """Insert or replace rows by id: each with its text, the terms Milvus analyses, and its path and taken."""
        with self._lock:
            for image_id, text, words, (path, taken) in zip(ids, texts, terms, attrs):
                image_id = int(image_id)
                if skip is not None and image_id in skip:
                    continue
                row = self._rows.get(image_id)
                if row is None:
                    row = len(self._ids)
                    self._rows[image_id] = row
                    self._ids.append(image_id)
                    self._texts.append("")
                    self._terms.append(Counter())
                    self._paths.append("")
                    self._taken.append(0)
                    self._seqs.append(0)
                    if row == len(self._lengths):
                        self._lengths = np.resize(self._lengths, max(row + 1, row + row // 4, 1024))
                else:
                    self._unpost(row)
                counts = Counter(words)
                self._texts[row], self._terms[row] = text, counts
                self._paths[row], self._taken[row] = path, int(taken)
                self._lengths[row] = sum(counts.values())
                self._total += sum(counts.values())
                for term, tf in counts.items():
                    self._postings.setdefault(term, {})[row] = tf
                self._seqs[row] = self._order.take(loaded)

    def delete(self, ids: Iterable[int]) -> None:
        """Remove rows by id (the last row moves into each hole)."""
        with self._lock:
            for row in popped_rows(self._rows, ids):
                self._unpost(row)
                last = len(self._ids) - 1
                if row != last:
                    for term, tf in self._terms[last].items():
                        posting = self._postings[term]
                        del posting[last]
                        posting[row] = tf
                    self._ids[row], self._texts[row], self._terms[row] = self._ids[last], self._texts[last], \
                        self._terms[last]
                    self._paths[row], self._taken[row], self._seqs[row] = self._paths[last], self._taken[last], \
                        self._seqs[last]
                    self._lengths[row] = self._lengths[last]
                    self._rows[self._ids[row]] = row
                for column in (self._ids, self._texts, self._terms, self._paths, self._taken, self._seqs):
                    column.pop()  # type: ignore[attr-defined]

    def _unpost(self, row: int) -> None:
        """Take a row's terms out of the postings and the total length (under the lock)."""
        for term in self._terms[row]:
            posting = self._postings[term]
            del posting[row]
            if not posting:
                del self._postings[term]
        self._total -= int(self._lengths[row])

    def ids(self) -> list[int]:
        """Every id held, in row order."""
        with self._lock:
            return list(self._ids)

    def rows(self) -> dict[int, tuple[str, Counter[str], str, int]]:
        """Every row held, by id: its text, term counts, path and taken time."""
        with self._lock:
            return {i: (self._texts[r], self._terms[r], self._paths[r], self._taken[r]) for i, r in self._rows.items()}

    def search(self, terms: Sequence[str], top_k: int, mask: Mask | None = None) -> list[tuple[int, float, str]]:
        """The top-k rows by BM25 against the query's terms, best first, among those the mask keeps and that hold
        at least one term: (id, score, text) each. Equal scores go to the row written earlier."""
        with self._lock:
            n = len(self._ids)
            if n == 0 or top_k <= 0:
                return []
            avgdl = self._total / n or 1.0
            lengths = self._lengths[:n]
            scores = np.zeros(n, dtype=np.float64)
            for term, weight in Counter(terms).items():
                posting = self._postings.get(term)
                if not posting:
                    continue
                rows = np.fromiter(posting.keys(), dtype=np.int64, count=len(posting))
                tf = np.fromiter(posting.values(), dtype=np.float64, count=len(posting))
                idf = math.log((n - len(posting) + 0.5) / (len(posting) + 0.5) + 1.0)
                scores[rows] += weight * idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * lengths[rows] / avgdl))
            found = np.flatnonzero(scores > 0)
            if mask is not None and len(found):
                paths = np.array([self._paths[r] for r in found], dtype=object)
                taken = np.array([self._taken[r] for r in found], dtype=np.int64)
                found = found[mask(paths, taken)]
            if len(found) > top_k:
                kth = np.partition(scores[found], len(found) - top_k)[len(found) - top_k]
                found = found[scores[found] >= kth]  # rows tied with the k-th too, so ties resolve by age
            seqs = np.array([self._seqs[r] for r in found], dtype=np.int64)
            best = found[np.lexsort((seqs, -scores[found]))][:top_k]
            return [(self._ids[r], float(scores[r]), self._texts[r]) for r in best]
