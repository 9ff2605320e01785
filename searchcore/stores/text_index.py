"""The words of a library, for keyword search: captions and OCR text in Milvus's own full-text (BM25) index.

Each library's text lives in a collection of its own beside its vectors (`searchcore_{library}__text`: id, the
text as read, its terms, their BM25 sparse vector, and the path and taken fields the filters use). Kept apart, a
library made before it (or on a server without BM25) gains it without touching its vectors, and the vector
collection keeps one schema on every Milvus. Milvus servers support BM25 from 2.5; Milvus Lite 3 does too.

People remember a fragment of what a picture says, not the words a segmenter cuts, so the terms are cut here, the
same way for the text and the query: after NFKC (full-width forms become half-width) and lower case, every Chinese
character and every pair of neighbouring ones, every run of Latin letters or digits and every pair of neighbouring
pieces ("3楼", "iphone 15"). Any fragment of two pieces or more then shares all its pairs with the text it comes
from. So that this does not depend on which tokenizers a Milvus release has (jieba would cut the pairs again),
each term goes to Milvus as the hex of its UTF-8 bytes, which the standard analyser of every version from 2.5
keeps whole. Traditional characters are indexed and looked for as simplified ones (see `normalise`). An index
made by an earlier release (no terms field, or one named for an older way of cutting) is rebuilt from its own
stored text when first opened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import re
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from searchcore.errors import UnsupportedError
from searchcore.ids import id_chunks
from searchcore.stores.exact_copy import LiteCopies
from searchcore.stores.filters import Filters
from searchcore.stores.text_copy import Mask, Page, TextCopy
from searchcore.stores.vectors import ID_BATCH, MAX_PATH_CHARS, Attrs, Hit, fit_path

log = logging.getLogger(__name__)
R = TypeVar("R")

MAX_TEXT_BYTES = 8192  # the text field's length: captions plus what OCR read, cut to fit
TERMS = "terms_v2"  # the terms field, named for how its terms were cut (v2: traditional as simplified)
MAX_TERMS_BYTES = 65535  # the terms field's length (Milvus's largest VARCHAR): about 20 bytes per character
PIECE = re.compile(r"[^\W_]+")  # letters and digits; Chinese characters are split from it one by one below
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f\u3040-\u30ff\uac00-\ud7af]")
MIN_SERVER = (2, 5)  # the first Milvus server release with BM25 full-text search
MAX_NQ = 256  # queries in one Milvus search of many


class MilvusHost(Protocol):
    """What the text index needs of a vector store: the Milvus it talks to, the name of a library's text
    collection there, and on Lite the in-process copies of the file's keyword indexes, which every write keeps
    in step and searches use when exact_copy is on (MilvusVectorStore is one)."""

    server: bool
    uri: str
    exact_copy: bool

    @property
    def text_copies(self) -> LiteCopies[TextCopy] | None: ...

    def run(self, what: str, action: Callable[[Any], R]) -> R: ...
    def text_collection(self, library: str) -> str: ...


class TextIndex:
    """BM25 over each library's captions and OCR text, in the Milvus its vector store talks to; on Milvus Lite
    searched from an in-process copy (stores/text_copy.py) once that is loaded."""

    def __init__(self, vectors: MilvusHost) -> None:
        self._store = vectors
        self._exists: dict[str, bool] = {}
        self._unsupported: UnsupportedError | None | bool = False  # False: not asked yet; None: supported

    def _name(self, library: str) -> str:
        return self._store.text_collection(library)

    def unsupported(self) -> UnsupportedError | None:
        """Why this Milvus cannot keep a text index (the version needed), or None when it can."""
        if self._unsupported is False:
            self._unsupported = None
            if self._store.server:
                version = self._store.run("get the server version", lambda client: client.get_server_version())
                numbers = tuple(int(n) for n in re.findall(r"\d+", str(version))[:2])
                if numbers < MIN_SERVER:
                    needed = f"{MIN_SERVER[0]}.{MIN_SERVER[1]}"
                    self._unsupported = UnsupportedError("full_text_unsupported", needed=needed,
                                                         uri=self._store.uri, version=str(version))
        return self._unsupported if isinstance(self._unsupported, UnsupportedError) else None

    def exists(self, library: str) -> bool:
        """True when the library has a text index."""
        if library not in self._exists:
            if self.unsupported():
                return False
            if not self._store.server:
                _quiet_jieba()  # before Lite loads an index, which imports jieba
            name = self._name(library)
            self._exists[library] = bool(self._store.run("list collections",
                                                          lambda client: client.has_collection(name)))
            if self._exists[library]:
                self._store.run("load the text index", lambda client: client.load_collection(name))
                self._rebuild_without_terms(library)
                self._load_copy(library)
        return self._exists[library]

    def _copy(self, library: str) -> TextCopy | None:
        """The library's in-process copy when it is loaded and this store searches copies."""
        copies = self._store.text_copies
        if copies is None or not self._store.exact_copy:
            return None
        copy = copies.ready(library)
        if copy is None:
            self._load_copy(library)
        return copy

    def copy_status(self, library: str) -> str:
        """The library's in-process copy: 'off' (a server, or exact_copy off), 'absent', 'loading' or 'ready'."""
        copies = self._store.text_copies
        return "off" if copies is None or not self._store.exact_copy else copies.status(library)

    def wait_for_copy(self, library: str, timeout: float = 60) -> bool:
        """Wait until the library's copy serves searches (starting its load); False when it does not in time."""
        deadline = time.monotonic() + timeout
        while self.exists(library) and self._copy(library) is None:
            if self.copy_status(library) != "loading" or time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return self.copy_status(library) == "ready"

    def check_copy(self, library: str) -> str | None:
        """Compare the library's in-process copy with Milvus, row by row (text, terms, path, taken); on a
        mismatch, load it again and say what differed. None when they agree or there is no copy."""
        copies = self._store.text_copies
        if copies is None or not self._store.exact_copy or not self.exists(library):
            return None
        with copies.write_lock:  # no write between reading Milvus and reading the copy
            copy = copies.ready(library)
            problem = None
            if copy is not None:
                held = copy.rows()
                stored = {i: (text, Counter(terms), path, taken)
                          for ids, texts, pages, attrs in self._copy_pages(library, threading.Event())
                          for i, text, terms, (path, taken) in zip(ids, texts, pages, attrs)}
                differ = sum(i in held and held[i] != row for i, row in stored.items())
                if differ or held.keys() != stored.keys():
                    problem = (f"the keyword index's copy holds {len(held)} texts and Milvus {len(stored)} ("
                               f"{len(stored.keys() - held.keys())} missing from the copy, "
                               f"{len(held.keys() - stored.keys())} not in Milvus, {differ} differ)")
                    log.warning("library %s: %s; reloading the copy from Milvus", library, problem)
            if copy is None or problem is not None:
                copies.reload(library, TextCopy(), lambda cancel: self._copy_pages(library, cancel), id(self._store),
                              size=lambda: self.count(library))
            if copies.ready(library) is None:
                return "the keyword index's copy could not be loaded; keyword searches go to Milvus"
            return problem

    def _load_copy(self, library: str) -> None:
        """Start loading the library's copy in the background (searches go to Milvus meanwhile)."""
        copies = self._store.text_copies
        if copies is not None and self._store.exact_copy and copies.status(library) == "absent":
            copies.load_in_background(library, TextCopy(), lambda cancel: self._copy_pages(library, cancel),
                                      id(self._store), size=lambda: self.count(library))

    def _copy_pages(self, library: str, cancel: threading.Event) -> Iterator[Page]:
        """Every row of the library's text index, in pages, for its copy."""
        iterator = self._store.run("read texts", lambda client: client.query_iterator(
            self._name(library), batch_size=ID_BATCH, filter="id >= -9223372036854775807",
            output_fields=["id", "text", TERMS, "path", "taken"]))
        try:
            while not cancel.is_set():
                page = self._store.run("read texts", lambda client: iterator.next())
                if not page:
                    return
                yield ([int(r["id"]) for r in page], [r["text"] for r in page], [r[TERMS].split() for r in page],
                       [(r["path"], int(r["taken"])) for r in page])
        finally:
            with contextlib.suppress(Exception):  # a dropped collection's iterator may fail to close
                iterator.close()

    @contextlib.contextmanager
    def _writing(self, library: str) -> Iterator[LiteCopies[TextCopy] | None]:
        """Around a write: the copies' write lock (the copy is forgotten when the write fails), and the copies."""
        copies = self._store.text_copies
        if copies is None:
            yield None
            return
        with copies.writing(library):
            yield copies

    def _rebuild_without_terms(self, library: str) -> None:
        """An index made before fragment search (its text analysed by jieba), or before its terms were cut as
        they are now, is made again from its own text."""
        name = self._name(library)
        described = self._store.run("describe the text index", lambda client: client.describe_collection(name))
        if any(f.get("name") == TERMS for f in described.get("fields", [])):
            return
        rows: list[dict] = []
        iterator = self._store.run("read texts", lambda client: client.query_iterator(
            name, batch_size=ID_BATCH, filter="id >= -9223372036854775807",
            output_fields=["id", "text", "path", "taken"]))
        while page := self._store.run("read texts", lambda client: iterator.next()):
            rows.extend(page)
        iterator.close()
        log.info("library %s: rebuilding its text index for fragment search (%d texts)", library, len(rows))
        self._store.run("drop the text index", lambda client: client.drop_collection(name))
        self._exists[library] = False
        self.create(library)
        for start in range(0, len(rows), ID_BATCH):
            chunk = rows[start:start + ID_BATCH]
            self.upsert(library, [r["id"] for r in chunk], [r["text"] for r in chunk],
                        [(r["path"], r["taken"]) for r in chunk])

    def count(self, library: str) -> int:
        """How many images of the library have text indexed."""
        if not self.exists(library):
            return 0
        rows = self._store.run("count texts", lambda client: client.query(
            self._name(library), filter="", output_fields=["count(*)"]))
        return int(rows[0]["count(*)"])

    def create(self, library: str) -> None:
        """Make the library's text index (a no-op when it exists); raises LibraryError where Milvus cannot."""
        why = self.unsupported()
        if why:
            raise why
        if self.exists(library):
            return
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
        schema.add_field(TERMS, DataType.VARCHAR, max_length=MAX_TERMS_BYTES, enable_analyzer=True,
                         analyzer_params={"type": "standard"})
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("path", DataType.VARCHAR, max_length=MAX_PATH_CHARS)
        schema.add_field("taken", DataType.INT64)
        schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=[TERMS],
                                     output_field_names=["sparse"]))
        index = MilvusClient.prepare_index_params()
        index.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        with self._writing(library) as copies:
            self._store.run("create the text index", lambda client: client.create_collection(
                self._name(library), schema=schema, index_params=index, consistency_level="Strong"))
            if copies is not None:
                copies.create_empty(library, TextCopy(), id(self._store))
        self._exists[library] = True
        log.info("created the text index of library %s", library)

    def upsert(self, library: str, ids: Sequence[int], texts: Sequence[str], attrs: Sequence[Attrs]) -> None:
        """Index (or replace) the text of images; an image whose text is empty is removed from the index."""
        kept = [(int(i), _fit(t), _encoded(index_terms(t)), fit_path(p), int(taken))
                for i, t, (p, taken) in zip(ids, texts, attrs) if t.strip()]
        rows = [{"id": i, "text": t, TERMS: terms, "path": p, "taken": taken} for i, t, terms, p, taken in kept]
        empty = [int(i) for i, t in zip(ids, texts) if not t.strip()]
        if rows:
            self.create(library)
            with self._writing(library) as copies:
                self._store.run("index texts", lambda client: client.upsert(self._name(library), rows))
                if copies is not None:
                    kept_ids, kept_texts, terms, paths, taken = zip(*kept)
                    copies.upserted(library, kept_ids, kept_texts, [t.split() for t in terms],
                                    list(zip(paths, taken)))
        if empty:
            self.delete(library, empty)

    def delete(self, library: str, ids: Sequence[int]) -> None:
        """Remove images from the index."""
        if not self.exists(library):
            return
        for chunk in id_chunks(ids, ID_BATCH):
            with self._writing(library) as copies:
                self._store.run("delete texts", lambda client, c=chunk: client.delete(  # type: ignore[misc]
                    self._name(library), ids=c))
                if copies is not None:
                    copies.deleted(library, chunk)

    def texts(self, library: str, ids: Sequence[int]) -> dict[int, str]:
        """The indexed text of images, by id."""
        found: dict[int, str] = {}
        for chunk in id_chunks(ids, ID_BATCH) if self.exists(library) else []:
            rows = self._store.run("fetch texts", lambda client, c=chunk: client.get(  # type: ignore[misc]
                self._name(library), ids=c, output_fields=["id", "text"]))
            found.update((int(r["id"]), r["text"]) for r in rows)
        return found

    def search(self, library: str, query: str, top_k: int, filters: Filters | None = None) -> list[TextHit]:
        """The images whose text best matches the query (BM25 over its pieces and pairs of pieces), best first:
        those whose text contains the whole query, or each of its space-separated words, come before the rest."""
        return self.search_many(library, [query], top_k, filters)[0]

    def search_many(self, library: str, queries: Sequence[str], top_k: int,
                    filters: Filters | None = None) -> list[list[TextHit]]:
        """`search` for each of many queries, in Milvus searches of up to MAX_NQ queries each."""
        why = self.unsupported()
        if why:
            raise why
        found: list[list[TextHit]] = [[] for _ in queries]
        asked = [(n, terms) for n, q in enumerate(queries) if (terms := query_terms(q))]
        if not asked or not self.exists(library):
            return found
        copy = self._copy(library)
        if copy is not None:
            mask = _mask(filters)
            for n, terms in asked:
                found[n] = _full_first(queries[n], copy.search(_encoded(terms).split(), top_k, mask))
            return found
        expression = filters.expression(media=False) if filters else ""  # no video_id here: search.py filters it
        for start in range(0, len(asked), MAX_NQ):
            chunk = asked[start:start + MAX_NQ]
            result = self._store.run("search texts", lambda client, c=chunk: client.search(  # type: ignore[misc]
                self._name(library), data=[_encoded(terms) for _, terms in c], anns_field="sparse",
                limit=top_k, search_params={"metric_type": "BM25"}, output_fields=["id", "text"],
                filter=expression, consistency_level="Strong"))
            for (n, _), ranked in zip(chunk, result):
                found[n] = _full_first(queries[n], [(int(h["id"]), abs(float(h["distance"])), h["entity"]["text"])
                                                    for h in ranked])
        return found

    def flush(self, library: str) -> None:
        """Seal fresh rows."""
        if self.exists(library):
            self._store.run("flush texts", lambda client: client.flush(self._name(library)))

    def drop(self, library: str) -> None:
        """Remove the library's text index."""
        self._exists.pop(library, None)
        if self._store.text_copies is not None:
            self._store.text_copies.invalidate(library)
        if self.unsupported():
            return
        name = self._name(library)
        if self._store.run("list collections", lambda client: client.has_collection(name)):
            self._store.run("drop the text index", lambda client: client.drop_collection(name))


def _full_first(query: str, ranked: Sequence[tuple[int, float, str]]) -> list[TextHit]:
    """BM25 hits (id, score, text), those whose text holds the whole query (or each of its words) first."""
    words = normalise(query).split()
    hits = [TextHit(image_id, score, contains_all(text, words)) for image_id, score, text in ranked]
    return sorted(hits, key=lambda h: not h.full)  # a stable sort: BM25's order within each group


def _mask(filters: Filters | None) -> Mask | None:
    """The copy's form of the filters' Milvus expression (no media: the index has no video_id)."""
    folder_and_dates = dataclasses.replace(filters, media=None) if filters else None
    return folder_and_dates.mask if folder_and_dates else None


def rrf(rankings: Sequence[Sequence[Hit]], top_k: int, k: int = 60) -> list[Hit]:
    """Reciprocal rank fusion: each image scores the sum of 1/(k + rank) over the rankings it is in; equal
    scores keep the order of the first ranking (hybrid search passes the semantic one first)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, 1):
            scores[hit.image_id] = scores.get(hit.image_id, 0.0) + 1.0 / (k + rank)
    order = {image_id: n for n, image_id in enumerate(scores)}
    best = sorted(scores.items(), key=lambda item: (-item[1], order[item[0]]))[:top_k]
    return [Hit(image_id, score) for image_id, score in best]


@dataclass(frozen=True)
class TextHit(Hit):
    """A keyword search result: its BM25 score, and whether its text contains the whole query (or all its words)."""

    full: bool = False


def normalise(text: str) -> str:
    """Text as it is compared: NFKC (full-width letters, digits and punctuation become half-width), traditional
    characters as simplified ones, and lower case."""
    return unicodedata.normalize("NFKC", text).translate(_simplified()).lower()


@functools.cache
def _simplified() -> dict[int, str]:
    """Traditional → simplified, one character for one, whatever stands beside it (hanziconv's table of 2,702
    characters: 會議室 → 会议室, 臺灣 → 台湾). Character by character, unlike a converter that looks at phrases,
    so a fragment of a text is always normalised to a fragment of the normalised text."""
    from hanziconv import HanziConv
    from hanziconv.charmap import traditional_charmap

    table = {ch: HanziConv.toSimplified(ch) for ch in set(traditional_charmap)}
    for ch, to in table.items():
        while table.get(to, to) != to and to != ch:  # a chain a → b → c ends at c, so normalising twice changes nothing
            to = table[to]
        table[ch] = to
    return {ord(ch): to for ch, to in table.items() if to != ch}


def contains_all(text: str, words: Sequence[str]) -> bool:
    """True when the normalised text holds each of the (normalised) words, spaces inside it ignored."""
    flat = "".join(normalise(text).split())
    return bool(words) and all("".join(w.split()) in flat for w in words)


def _pieces(text: str) -> list[list[str]]:
    """Each line's pieces: every Chinese (or kana, hangul) character alone, every run of Latin letters or digits."""
    lines = []
    for line in normalise(text).splitlines():
        pieces: list[str] = []
        for run in PIECE.findall(line):
            pieces.extend(p for p in re.split(f"({CJK.pattern})", run) if p)
        lines.append(pieces)
    return lines


def index_terms(text: str) -> list[str]:
    """What the index holds for a text: each piece, and each pair of neighbouring pieces within a line."""
    terms: list[str] = []
    for pieces in _pieces(text):
        terms.extend(pieces)
        terms.extend(_pairs(pieces))
    return terms


def query_terms(query: str) -> list[str]:
    """What a query looks for: its pairs of pieces (so a fragment matches across word boundaries), plus its Latin
    and digit runs, which are words of their own; a single character looks for itself."""
    lines = _pieces(" ".join(query.split()))
    pieces = [p for line in lines for p in line]
    if len(pieces) == 1:
        return pieces
    return [*_pairs(pieces), *(p for p in pieces if not CJK.fullmatch(p))]


def _pairs(pieces: Sequence[str]) -> list[str]:
    return [a + ("" if CJK.fullmatch(a) or CJK.fullmatch(b) else " ") + b for a, b in zip(pieces, pieces[1:])]


def _encoded(terms: Sequence[str]) -> str:
    """Terms as hex words, which every Milvus analyser keeps whole; cut at a term to fit the field."""
    out, size = [], 0
    for term in terms:
        word = term.encode()[:32].hex()
        size += len(word) + 1
        if size > MAX_TERMS_BYTES:
            break
        out.append(word)
    return " ".join(out)


def image_text(captions: Sequence[str], ocr: str | None) -> str:
    """What the index holds for one image: its captions, then the words read in it."""
    return "\n".join([*captions, *([ocr] if ocr else [])])


@functools.cache
def _quiet_jieba() -> None:
    """Milvus Lite segments Chinese with jieba in this process, and jieba's import sets its own logger to DEBUG
    with a console handler ("Building prefix dict..." on every start): imported here first, and quietened."""
    try:
        import jieba
    except ImportError:  # Lite says what is missing when it needs it
        return
    jieba.setLogLevel(logging.WARNING)


def _fit(text: str) -> str:
    data = text.encode()
    return text if len(data) <= MAX_TEXT_BYTES else data[:MAX_TEXT_BYTES].decode(errors="ignore")

