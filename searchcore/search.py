"""Search: text or image → vector → top-k → image ids with their captions (no image bytes)."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from searchcore.config import DUPLICATE_THRESHOLD
from searchcore.errors import ImageDecodeError, LibraryError, QueryError
from searchcore.ids import parse_image_id
from searchcore.models.encoder import Encoder
from searchcore.query import Understood, clean_query, understand
from searchcore.records import wall_clock
from searchcore.sources.imaging import decode_image
from searchcore.stores.filters import Filters
from searchcore.stores.image_db import ImageDb
from searchcore.stores.images import ImageMeta
from searchcore.stores.text_index import TextHit, TextIndex, contains_all, normalise
from searchcore.stores.vectors import Hit, VectorStore

log = logging.getLogger(__name__)

MAX_TOP_K = 1000  # results of one search in all, offset included (the gallery pages through them)
Mode = Literal["semantic", "keyword", "hybrid"]
MODES: tuple[Mode, ...] = get_args(Mode)
EXAMPLE_SAMPLE = 2000  # images whose captions and text suggest the example queries
FALLBACK_EXAMPLES = [  # examples for a library too small to suggest its own: they suit photos
    "海边的日落", "一只猫", "雪山", "生日蛋糕", "城市夜景", "一群人在吃饭"]
FUSION_DEPTH = 100  # how deep each ranking goes into a hybrid fusion (at least the page asked for)
EXCLUDE_WEIGHT = 0.5  # how much of an excluded description's embedding the query gives up (docs/USER_GUIDE.md)
BATCH = 256  # queries encoded and searched together by rank_texts
SORTS = ("relevance", "newest", "oldest")
CUTOFF_DEPTH = 200  # the hits an automatic cut chooses among (a search with cutoff auto goes this deep)
PHRASE_DEPTH = 4096  # the pictures holding the quoted words that a search ranks, at most
# The lowest similarity the automatic cut keeps, by a model's name (a part of it); measured: docs/USER_GUIDE.md.
# tiny_clip: its shape classes score 0.85-0.95 with their caption and 0.66 at most with another's (USER_GUIDE).
CUT_FLOORS = {"tiny_clip": 0.5}
DEFAULT_CUT_FLOOR = 0.0  # a model not measured: only hits that point away from the query fall below
_KEYWORD_SEARCHES = ThreadPoolExecutor(max_workers=4, thread_name_prefix="keyword-search")
VIDEO_DEPTH = 4  # in a library with videos, searches fetch this many times deeper: merged frames leave room
FOLD_BLOCK = 128  # pictures the fold compares at a time (fold_rows)
SEGMENT_GAP = 1.5  # hits of one video this many frame intervals apart or closer join one segment
# A frame joins its video's strong segments when it scores at least this far from the ranking's median towards the
# video's best frame; weaker frames form segments of their own, ranked lower. Without it, a small library's
# every frame is a hit and one segment spans the whole video whatever the query matched.
SEGMENT_STRENGTH = 0.5


@dataclass(frozen=True)
class VideoMoment:
    """Where in a video a result is: the segment of neighbouring matching frames, in seconds."""

    video_id: int
    path: str  # the video file's path, relative to its folder
    start: float
    end: float
    duration: float

    def to_json(self) -> dict[str, Any]:
        """The result's "video" item."""
        return {"path": self.path, "start": round(self.start, 3), "end": round(self.end, 3)}


@dataclass
class SearchResult:
    """One image that matched, best first by rank; its bytes stay in the image store until shown."""

    rank: int
    image_id: int
    score: float
    format: str
    width: int
    height: int
    captions: list[str]
    fetch: Callable[[], bytes] | None = field(default=None, repr=False, compare=False)
    path: str = ""  # a folder image's relative path
    taken: int | None = None  # when it was taken (naive seconds), when known
    text: str | None = None  # the words OCR read in it, when OCR ran
    similarity: float | None = None  # cosine of the image and the query (by meaning), for every query
    keyword_score: float | None = None  # BM25 of its words against the query's, when its words matched
    video: VideoMoment | None = None  # a moment of a video (image_id is its best frame), None for a picture
    text_match: bool = False  # its words (captions or OCR) hold the whole query, or each of its words
    similar: list[int] = field(default_factory=list)  # near-identical pictures folded into it (collapse)

    @property
    def data(self) -> bytes:
        """The image's bytes, read from the image store now (search itself reads none)."""
        if self.fetch is None:
            raise LookupError(f"image {self.image_id} has no image store to read its bytes from")
        return self.fetch()

    def to_json(self) -> dict[str, Any]:
        """The CLI's --json shape."""
        return {"rank": self.rank, "image_id": self.image_id, "score": round(self.score, 6),
                "captions": self.captions, "path": self.path or None,
                "taken": None if self.taken is None else wall_clock(self.taken).isoformat(timespec="seconds"),
                "text": self.text, "similarity": _rounded(self.similarity),
                "keyword_score": _rounded(self.keyword_score), "media": "image" if self.video is None else "video",
                "video": None if self.video is None else self.video.to_json(), "text_match": self.text_match,
                "similar": self.similar}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _whole_number(value: Any) -> int:
    """A whole number given as a number or text; ValueError for anything else (a bool, 2.5, "abc", inf)."""
    try:
        if isinstance(value, bool) or not float(value).is_integer():
            raise ValueError
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        raise ValueError(value) from None


def parse_top_k(value: Any) -> int:
    """A top-k between 1 and MAX_TOP_K, or a QueryError saying what is wrong."""
    try:
        top_k = _whole_number(value)
    except ValueError:
        raise QueryError("top_k_not_whole", max_top_k=MAX_TOP_K, value=value) from None
    if not 1 <= top_k <= MAX_TOP_K:
        raise QueryError("top_k_range", max_top_k=MAX_TOP_K, top_k=top_k)
    return top_k


def parse_offset(value: Any, top_k: int) -> int:
    """How many results to skip (0 to MAX_TOP_K - top_k), or a QueryError."""
    if value is None:
        return 0
    try:
        offset = _whole_number(value)
    except ValueError:
        raise QueryError("offset_not_whole", value=value) from None
    if not 0 <= offset <= MAX_TOP_K - top_k:
        raise QueryError("offset_range", max_top_k=MAX_TOP_K, offset=offset, top_k=top_k)
    return offset


@dataclass(frozen=True)
class Page:
    """Which results a search returns and among which images: ranks offset+1 .. offset+top_k, filtered."""

    top_k: int
    offset: int = 0
    filters: Filters | None = None

    @classmethod
    def parse(cls, top_k: Any, offset: Any = None, filters: Filters | None = None) -> Page:
        """A validated page, or a QueryError."""
        k = parse_top_k(top_k)
        return cls(k, parse_offset(offset, k), filters)


def parse_query_id(value: Any) -> int:
    """An image id given as text or a number, from 0 to 2^63-1, or a QueryError."""
    try:
        return parse_image_id(str(value))
    except ValueError:
        raise QueryError("image_id_invalid", value=str(value)[:40]) from None


# The encoder comes as a function so that a query is validated before a model is loaded for it.


def parse_mode(value: Any) -> str | None:
    """A search mode (semantic, keyword or hybrid), None for the library's default, or a QueryError."""
    if value is None or value == "":
        return None
    if value not in MODES:
        raise QueryError("mode_invalid", modes=", ".join(MODES), value=str(value)[:40])
    return str(value)


def parse_min_similarity(value: Any) -> float | None:
    """A similarity threshold from -1 to 1 (None or "" for none), or a QueryError."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        threshold = float(value)
    except (TypeError, ValueError):
        raise QueryError("min_similarity_not_number", value=str(value)[:40]) from None
    if not -1.0 <= threshold <= 1.0:  # NaN fails this too
        raise QueryError("min_similarity_range", value=threshold)
    return threshold


def parse_sort(value: Any) -> str:
    """relevance (also for None or ""), newest or oldest, or a QueryError."""
    if value is None or value == "":
        return "relevance"
    if value not in SORTS:
        raise QueryError("sort_invalid", sorts=", ".join(SORTS), value=str(value)[:40])
    return str(value)


def parse_cutoff(value: Any) -> bool:
    """True for "auto" (the automatic relevance cut), False for None, "" or "off", or a QueryError."""
    if value is None or value == "" or value == "off" or value is False:
        return False
    if value in ("auto", True):
        return True
    raise QueryError("cutoff_invalid", value=str(value)[:40])


def read_query(text: Any, *, images: ImageDb, library: str, literal: bool = False, exclude: Any = None,
               today: dt.date | None = None) -> Understood:
    """The query as search reads it (searchcore/query.py): time words only on a library whose pictures have
    dates, else used as typed."""
    reading = understand(text, today, literal=bool(literal), exclude=exclude)
    if reading.dated and not images.has_dates(library):  # asked only of a query with time words
        reading = understand(text, today, literal=bool(literal), exclude=exclude, dates=False)
    return reading


def dated_filters(filters: Filters | None, understood: Understood) -> Filters | None:
    """The filters with the understood dates, unless the caller gave a date of their own (theirs win)."""
    if not understood.dated or (filters is not None and (filters.since is not None or filters.until is not None)):
        return filters
    base = filters or Filters()
    dated = Filters.parse(since=understood.since, until=understood.until)
    return replace(base, since=dated.since, until=dated.until)


def search_text(text: Any, top_k: Any, *, encoder: Callable[[], Encoder], vectors: VectorStore,
                images: ImageDb, library: str, offset: Any = None, filters: Filters | None = None,
                mode: Any = None, texts: TextIndex | None = None, min_similarity: Any = None,
                exclude: Any = None, literal: Any = False, cutoff: Any = None, sort: Any = None,
                collapse: Any = False, today: dt.date | None = None) -> list[SearchResult]:
    """Top-k images for a text query: by meaning (CLIP), by the words in captions and pictures (BM25), or both
    (hybrid, the default when the library has text: pictures whose words hold the query first, then the rest,
    each by similarity). The query is read first (read_query): quoted words must appear, time words become dates
    (literal: neither), `-word` excludes. min_similarity drops images whose cosine with the query is below it;
    exclude drops images whose words contain an excluded word and pushes down those that look like it; cutoff
    "auto" keeps the hits above the query's own cut (auto_cut); sort orders the hits returned by date; collapse
    folds near-identical pictures into the best-ranked one (fold)."""
    understood = read_query(text, images=images, library=library, literal=literal, exclude=exclude, today=today)
    page = Page.parse(top_k, offset, filters)
    threshold = parse_min_similarity(min_similarity)
    order, cut, folded = parse_sort(sort), parse_cutoff(cutoff), bool(collapse)
    page = Page(page.top_k, page.offset, dated_filters(page.filters, understood))
    query, excluded, phrases = understood.text, understood.exclude, understood.phrases
    chosen = parse_mode(mode) or ("hybrid" if texts is not None and texts.exists(library) else "semantic")
    if phrases and (texts is None or texts.unsupported() or not texts.exists(library)):
        raise QueryError("phrase_needs_text_index", phrases="、".join(phrases), library=library)
    if chosen != "semantic" and texts is None:
        raise QueryError("full_text_missing", mode=chosen)
    if chosen != "semantic" and texts is not None and (why := texts.unsupported()):
        raise why
    if not query:  # only time words: the period's pictures, newest first (or oldest, when asked)
        if vectors.meta(library) is None:
            raise LibraryError("library_empty", library=library)
        listed = [Hit(i, 0.0) for i in images.dated(library, page.filters or Filters(), MAX_TOP_K,
                                                       newest=order != "oldest")]
        if excluded:
            listed = _drop_words(listed, excluded, images=images, library=library)
        return hits_to_results(listed, page, images=images, library=library,
                               similarity={}, finish=Finish(sort=order, collapse=folded, vectors=vectors))
    if chosen == "keyword" and vectors.meta(library) is None:
        raise LibraryError("library_empty", library=library)
    depth = page.offset + page.top_k
    if chosen != "semantic" or excluded or folded:
        depth = max(FUSION_DEPTH, depth)
    if cut:
        depth = max(CUTOFF_DEPTH, depth)
    depth = _deeper(depth, images, library)
    # the keyword search runs in Milvus (a server, or Milvus Lite's threads here) while the query is encoded
    words: Future[list[TextHit]] | None = None if chosen == "semantic" or texts is None else \
        _KEYWORD_SEARCHES.submit(texts.search, library, query, depth, page.filters)
    holding: Future[list[TextHit]] | None = None if not phrases or texts is None else \
        _KEYWORD_SEARCHES.submit(texts.search, library, " ".join(phrases), PHRASE_DEPTH, page.filters)
    model = encoder()
    _require_library(vectors, library, model)
    vector, *unwanted = model.encode_texts([query, *([" ".join(excluded)] if excluded else [])])
    vector = np.asarray(vector, dtype=np.float32)
    probe = vector if not unwanted else _without(vector, np.asarray(unwanted[0], dtype=np.float32))
    keyword = [] if words is None else words.result()
    if holding is not None:
        allowed = _holding(holding.result(), phrases, images=images, library=library)
        keyword = [h for h in keyword if h.image_id in allowed]
        semantic = _scored(list(allowed), probe, vectors=vectors, library=library)
        if chosen == "keyword":  # the rest's BM25 ranking, then the other pictures that hold the phrase
            ranked = {h.image_id for h in keyword}
            keyword += [TextHit(h.image_id, 0.0) for h in semantic if h.image_id not in ranked]
    else:
        semantic = [] if chosen == "keyword" else vectors.search(library, probe[None, :], depth, page.filters)[0]
    if chosen == "hybrid":
        ranking = hybrid(query, semantic, keyword, probe, vectors=vectors, images=images, library=library)
    else:
        ranking = rank(chosen, semantic, keyword)
    if excluded:
        ranking = _drop_words(ranking, excluded, images=images, library=library)
    similarity = {h.image_id: h.score for h in semantic} if probe is vector else {}
    # a threshold or a cut needs every candidate's similarity; without one, the page's will do
    shown = ranking if threshold is not None or cut or folded else ranking[page.offset:page.offset + page.top_k]
    missing = [h.image_id for h in shown if h.image_id not in similarity]
    for image_id, stored in (vectors.vectors(library, missing) if missing else {}).items():
        similarity[image_id] = float(np.dot(stored, vector))
    if threshold is not None:
        ranking = [h for h in ranking if similarity.get(h.image_id, -math.inf) >= threshold]
    scores = {h.image_id: h.score for h in keyword}
    finish = Finish(query=query, cut=cut, sort=order, collapse=folded, vectors=vectors, model=model.name)
    return hits_to_results(ranking, page, images=images, library=library, similarity=similarity, keyword=scores,
                           by_keyword=chosen == "keyword", finish=finish)


def _holding(found: list[TextHit], phrases: list[str], *, images: ImageDb, library: str) -> set[int]:
    """The ids among keyword hits whose words (captions or OCR) hold every quoted phrase, folded as the keyword
    index folds them."""
    wanted = [normalise(p) for p in phrases]
    metas = images.get_meta_many(library, [h.image_id for h in found])
    return {i for i, meta in metas.items() if contains_all(_words_of(meta), wanted)}


def _words_of(meta: ImageMeta) -> str:
    return "\n".join([*meta.captions, meta.text or ""])


def _scored(ids: list[int], probe: np.ndarray, *, vectors: VectorStore, library: str) -> list[Hit]:
    """Hits for ids by their cosine with the probe, best first."""
    stored = vectors.vectors(library, ids) if ids else {}
    return sorted((Hit(i, float(np.dot(v, probe))) for i, v in stored.items()), key=lambda h: (-h.score, h.image_id))


def hybrid(query: str, semantic: list[Hit], keyword: list[TextHit], probe: np.ndarray, *, vectors: VectorStore,
           images: ImageDb, library: str) -> list[Hit]:
    """The hybrid order: the images whose words hold the query (or each of its words) first, by similarity, then
    the rest of the semantic ranking by similarity; BM25 only breaks exact ties of similarity. Similarity is the
    probe's (the query less an excluded description, when there is one). A keyword hit that does not hold the
    query and is not in the semantic ranking is left out, so a query no text holds ranks as semantic."""
    score = {h.image_id: h.score for h in semantic}
    bm25 = {h.image_id: h.score for h in keyword}
    held = {h.image_id for h in keyword if h.full}
    candidates = list(dict.fromkeys([*(h.image_id for h in semantic), *held]))
    words = normalise(query).split()
    metas = images.get_meta_many(library, [i for i in candidates if i not in held])
    held |= {i for i, meta in metas.items() if contains_all(_words_of(meta), words)}
    missing = [i for i in held if i not in score]
    score.update((h.image_id, h.score) for h in _scored(missing, probe, vectors=vectors, library=library))
    kept = [i for i in candidates if i in score]
    kept.sort(key=lambda i: (i not in held, -score[i], -bm25.get(i, 0.0)))
    return [Hit(i, score[i]) for i in kept]

def rank(mode: str, semantic: list[Hit], keyword: list[TextHit]) -> list[Hit]:
    """The semantic or the keyword mode's ranking (hybrid's needs the query's words: see hybrid)."""
    return list(semantic) if mode == "semantic" else list(keyword)


def rank_texts(queries: Sequence[str], top_k: Any, mode: Any, *, encoder: Callable[[], Encoder],
               vectors: VectorStore, images: ImageDb, library: str,
               texts: TextIndex | None = None) -> list[list[Hit]]:
    """The top-k ranking of each of many queries, as search_text ranks one read literally (no threshold,
    exclusion, quoted words, time words, filter or page, and a video's frames are not merged into moments), in
    batches: one encoding, one vector search and one BM25 search per BATCH queries. For measuring thousands of
    queries (the fragment tests and bench); a search of the app or the CLI goes through search_text."""
    k = parse_top_k(top_k)
    chosen = parse_mode(mode) or "semantic"
    if chosen != "semantic" and texts is None:
        raise QueryError("full_text_missing", mode=chosen)
    model = encoder()
    _require_library(vectors, library, model)
    cleaned = [clean_query(q) for q in queries]
    depth = k if chosen == "semantic" else max(FUSION_DEPTH, k)
    out: list[list[Hit]] = []
    for start in range(0, len(cleaned), BATCH):
        chunk = cleaned[start:start + BATCH]
        encoded = np.asarray(model.encode_texts(chunk), dtype=np.float32)
        semantic = [[] for _ in chunk] if chosen == "keyword" else vectors.search(library, encoded, depth)
        keyword: list[list[TextHit]] = [[] for _ in chunk] if chosen == "semantic" or texts is None else \
            texts.search_many(library, chunk, depth)
        for query, probe, s, w in zip(chunk, encoded, semantic, keyword):
            ranked = hybrid(query, s, w, probe, vectors=vectors, images=images, library=library) \
                if chosen == "hybrid" else rank(chosen, s, w)
            out.append(ranked[:k])
    return out


def _without(vector: np.ndarray, unwanted: np.ndarray) -> np.ndarray:
    """The query's embedding less an excluded description's, normalised again."""
    probe = vector - EXCLUDE_WEIGHT * unwanted
    norm = float(np.linalg.norm(probe))
    return probe / norm if norm > 0 else vector


def _drop_words(ranking: list[Hit], excluded: list[str], *, images: ImageDb, library: str) -> list[Hit]:
    """The ranking less images whose captions or OCR text contain an excluded word."""
    words = [normalise(w) for w in excluded]
    stored = images.get_meta_many(library, [h.image_id for h in ranking])
    kept = []
    for hit in ranking:
        meta = stored.get(hit.image_id)
        text = "\n".join([*meta.captions, meta.text or ""]) if meta is not None else ""
        if not any(contains_all(text, [w]) for w in words):
            kept.append(hit)
    return kept


def search_image(data: bytes, top_k: Any, *, encoder: Callable[[], Encoder], vectors: VectorStore,
                 images: ImageDb, library: str, offset: Any = None,
                 filters: Filters | None = None) -> list[SearchResult]:
    """Top-k images that look like an image given as bytes."""
    page = Page.parse(top_k, offset, filters)
    try:
        decoded = decode_image(data)
    except ImageDecodeError as exc:
        raise QueryError("query_image_unusable", reason=exc) from None
    model = encoder()
    _require_library(vectors, library, model)
    return search_vector(model.encode_images([decoded.image])[0], page, vectors=vectors, images=images,
                         library=library)


def search_similar(image_id: Any, top_k: Any, *, vectors: VectorStore, images: ImageDb,
                   library: str, offset: Any = None, filters: Filters | None = None) -> list[SearchResult]:
    """Top-k images like one already in the library ("more like this")."""
    page = Page.parse(top_k, offset, filters)
    ident = parse_query_id(image_id)
    found = vectors.vectors(library, [ident]) if vectors.meta(library) is not None else {}
    if ident not in found:
        raise QueryError("image_not_in_library", image_id=ident, library=library)
    return search_vector(found[ident], page, vectors=vectors, images=images, library=library)


def search_vector(vector: np.ndarray, page: Page, *, vectors: VectorStore, images: ImageDb,
                  library: str) -> list[SearchResult]:
    """A page of the top images for a query vector, read without their bytes; ids without a stored image are
    left out. The filters apply inside the vector search; ranks count from 1 at the best match."""
    hits = vectors.search(library, np.asarray(vector, dtype=np.float32)[None, :],
                          _deeper(page.offset + page.top_k, images, library), page.filters)[0]
    return hits_to_results(hits, page, images=images, library=library)


@dataclass(frozen=True)
class Finish:
    """What happens to a ranking once it is found, before the page is cut from it: the automatic cut, the fold
    of near-identical pictures, and the order by date; query is the text whose words mark a text match."""

    query: str = ""
    cut: bool = False
    sort: str = "relevance"
    collapse: bool = False
    vectors: VectorStore | None = None
    model: str = ""


def hits_to_results(hits: list[Hit], page: Page, *, images: ImageDb, library: str,
                    similarity: dict[int, float] | None = None, keyword: dict[int, float] | None = None,
                    by_keyword: bool = False, finish: Finish | None = None) -> list[SearchResult]:
    """The page's results from a ranking of hits (ranks count from 1 at its best), without image bytes. Each
    carries its similarity (the hit's own score when none is given) and its keyword score when it has one; its
    score is the keyword score in a keyword search and its similarity otherwise. A video's matching frames
    merge into moments (see moments); then finish's cut, fold and sort apply, in that order."""
    finish = finish or Finish()
    hits, found = moments(hits, images=images, library=library,
                          media=page.filters.media if page.filters is not None else None)

    def cosine(hit: Hit) -> float | None:
        return hit.score if similarity is None else similarity.get(hit.image_id)

    if finish.cut:
        level = auto_cut([cosine(h) for h in hits], cut_floor(finish.model))
        hits = [h for h in hits if (cosine(h) if cosine(h) is not None else -math.inf) >= level]  # type: ignore
    similar: dict[int, list[int]] = {}
    # folding and sorting read the metadata of every hit they look at, and the page's comes from the same read
    every = finish.collapse or finish.sort != "relevance"
    stored = images.get_meta_many(library, [h.image_id for h in hits]) if every else {}
    if finish.collapse and finish.vectors is not None:
        hits, similar = fold(hits, found, stored, vectors=finish.vectors, library=library)
    hits = hits[:page.offset + page.top_k]
    if finish.sort != "relevance":
        hits = sort_by_date(hits, {i: m.taken for i, m in stored.items()}, newest=finish.sort == "newest")
    hits = hits[page.offset:]
    if not every:
        stored = images.get_meta_many(library, [h.image_id for h in hits])
    words = normalise(finish.query).split()
    results: list[SearchResult] = []
    for hit in hits:
        meta = stored.get(hit.image_id)
        if meta is None:
            log.warning("library %s: vector %d has no stored image; run `searchcore check --repair`",
                        library, hit.image_id)
            continue
        cosine_ = cosine(hit)
        bm25 = (keyword or {}).get(hit.image_id)
        score = (bm25 if by_keyword else cosine_) or 0.0
        results.append(SearchResult(page.offset + len(results) + 1, hit.image_id, score, meta.format,
                                    meta.width, meta.height, meta.captions, _fetcher(images, library, hit.image_id),
                                    meta.path, meta.taken or None, meta.text, cosine_, bm25, found.get(hit.image_id),
                                    bool(words) and contains_all(_words_of(meta), words),
                                    similar.get(hit.image_id, [])))
    return results


def sort_by_date(hits: list[Hit], taken: dict[int, int], *, newest: bool) -> list[Hit]:
    """The hits by when they were taken, newest (or oldest) first; those without a date last, in their order."""
    dated = [h for h in hits if taken.get(h.image_id)]
    dated.sort(key=lambda h: taken[h.image_id], reverse=newest)  # stable: equal dates keep their rank order
    return [*dated, *(h for h in hits if not taken.get(h.image_id))]


def cut_floor(model: str) -> float:
    """The lowest similarity the automatic cut keeps for a model (CUT_FLOORS, measured: docs/USER_GUIDE.md)."""
    name = Path(model).name if model else ""
    return next((floor for key, floor in CUT_FLOORS.items() if key in name), DEFAULT_CUT_FLOOR)


def auto_cut(scores: Sequence[float | None], floor: float) -> float:
    """The similarity at or above which a query's hits are relevant: among its CUTOFF_DEPTH best similarities
    at or above the floor, the one just above the largest drop between two neighbours (the best hit is always
    kept when it clears the floor). A drop relative to the similarity does worse (USER_GUIDE, "The automatic cut")."""
    values = sorted((s for s in scores if s is not None and s >= floor), reverse=True)[:CUTOFF_DEPTH]
    if len(values) < 2:
        return values[0] if values else floor  # none clears the floor: nothing is kept
    gaps = -np.diff(np.asarray(values, dtype=np.float64))
    return float(values[int(np.argmax(gaps))])


def fold(hits: list[Hit], moments_found: dict[int, VideoMoment], metas: dict[int, ImageMeta], *,
         vectors: VectorStore, library: str,
         threshold: float = DUPLICATE_THRESHOLD) -> tuple[list[Hit], dict[int, list[int]]]:
    """The hits with near-identical pictures folded into the best-ranked one: a picture whose vector's cosine with
    a picture kept before it is at least the duplicates finder's threshold is left out and listed under the first
    such one. Video frames and moments are never folded, nor pictures into them (metas: the hits' metadata)."""
    pictures = [h.image_id for h in hits
                if h.image_id not in moments_found and h.image_id in metas and not metas[h.image_id].video_id]
    stored = vectors.vectors(library, pictures) if len(pictures) > 1 else {}
    ids = [i for i in pictures if i in stored]
    if len(ids) < 2:
        return hits, {}
    matrix = np.asarray([stored[i] for i in ids], dtype=np.float32)
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    into = fold_rows(matrix, threshold)
    folded = into >= 0
    similar: dict[int, list[int]] = {}
    for gone_row in np.flatnonzero(folded).tolist():
        similar.setdefault(ids[int(into[gone_row])], []).append(ids[gone_row])
    gone = {ids[r] for r in np.flatnonzero(folded).tolist()}
    return [h for h in hits if h.image_id not in gone], similar


def fold_rows(matrix: np.ndarray, threshold: float, block: int = FOLD_BLOCK) -> np.ndarray:
    """For unit rows in rank order, the row each row folds into (-1: kept): the first kept row before it whose
    cosine with it is at least threshold. Rows go in blocks, each compared with the rows kept before it and
    with itself, so a folded row is never multiplied again: about a third of the all-pairs product when most
    rows are kept (bench/bench_understand.py), with the same answer (tests/search/test_search_reading.py)."""
    rows_in, dim = matrix.shape
    into = np.full(rows_in, -1)
    kept = np.empty((rows_in, dim), dtype=matrix.dtype)
    kept_rows = np.empty(rows_in, dtype=np.int64)
    count = 0
    for start in range(0, rows_in, block):
        rows = matrix[start:start + block]
        target = np.full(len(rows), -1)
        if count:
            near = rows @ kept[:count].T >= threshold
            has = near.any(axis=1)
            target[has] = kept_rows[:count][near[has].argmax(axis=1)]  # the first kept row near it
        inner = np.triu(rows @ rows.T >= threshold, 1)
        for row in np.flatnonzero(inner.any(axis=1)).tolist():  # in rank order: a kept row takes the later ones
            if target[row] < 0:
                target[inner[row] & (target < 0)] = start + row
        now_kept = np.flatnonzero(target < 0)
        kept[count:count + len(now_kept)] = rows[now_kept]
        kept_rows[count:count + len(now_kept)] = now_kept + start
        count += len(now_kept)
        into[start:start + len(rows)] = target
    return into


def _deeper(depth: int, images: ImageDb, library: str) -> int:
    """How deep to search so that a page is still full once a video's frames merge into moments."""
    return depth * VIDEO_DEPTH if images.has_videos(library) else depth


def moments(ranking: list[Hit], *, images: ImageDb, library: str,
            media: str | None = None) -> tuple[list[Hit], dict[int, VideoMoment]]:
    """The ranking with each video's matching frames merged into segments, and each segment's moment by the id of
    its best frame, which keeps its place (a video appears once per segment). Frames of one video within
    SEGMENT_GAP x its frame interval of each other join one segment, from its earliest frame's time to its
    latest's plus the interval (at most the video's end); frames well below the video's best (SEGMENT_STRENGTH)
    only join each other. media drops hits of the other kind (the keyword index
    cannot filter by it)."""
    if not images.has_videos(library):
        return ([] if media == "video" else ranking), {}
    metas = images.get_meta_many(library, [h.image_id for h in ranking])
    frames: dict[int, list[tuple[float, int, float]]] = {}
    for hit in ranking:
        meta = metas.get(hit.image_id)
        if meta is not None and meta.video_id:
            frames.setdefault(meta.video_id, []).append((meta.time_s, hit.image_id, hit.score))
    videos = images.get_videos(library, list(frames))
    median = float(np.median([h.score for h in ranking])) if ranking else 0.0
    segment: dict[int, VideoMoment] = {}  # frame id -> its segment
    for video_id, hits in frames.items():
        video = videos.get(video_id)
        if video is None:
            continue
        cut = max(score for _, _, score in hits)
        cut -= SEGMENT_STRENGTH * (cut - median)
        for part in ([h for h in hits if h[2] >= cut], [h for h in hits if h[2] < cut]):
            for group in _runs(sorted(part), SEGMENT_GAP * video.frame_interval):
                end = group[-1][0] + video.frame_interval
                moment = VideoMoment(video_id, video.path, group[0][0],
                                     min(end, video.duration) if video.duration else end, video.duration)
                segment.update((frame, moment) for _, frame, _ in group)
    merged: list[Hit] = []
    found: dict[int, VideoMoment] = {}
    shown: set[VideoMoment] = set()
    for hit in ranking:
        meta = metas.get(hit.image_id)
        is_frame = meta is not None and meta.video_id != 0
        if media is not None and is_frame != (media == "video"):
            continue
        joined = segment.get(hit.image_id)
        if joined is not None:
            if joined in shown:
                continue
            shown.add(joined)
            found[hit.image_id] = joined
        merged.append(hit)
    return merged, found


def _runs(hits: list[tuple[float, int, float]], gap: float) -> list[list[tuple[float, int, float]]]:
    """Time-sorted (time, frame, score) hits cut wherever two neighbours are more than gap seconds apart."""
    runs: list[list[tuple[float, int, float]]] = []
    for hit in hits:
        if runs and hit[0] - runs[-1][-1][0] <= gap:
            runs[-1].append(hit)
        else:
            runs.append([hit])
    return runs


def _fetcher(images: ImageDb, library: str, image_id: int) -> Callable[[], bytes]:
    def fetch() -> bytes:
        found = images.get_many(library, [image_id])
        if image_id not in found:
            raise LookupError(f"image {image_id} is no longer in library {library!r}")
        return found[image_id].data

    return fetch


def _require_library(vectors: VectorStore, library: str, encoder: Encoder) -> None:
    meta = vectors.meta(library)
    if meta is None:
        raise LibraryError("library_empty", library=library)
    if meta.model != encoder.name or meta.dim != encoder.dim:
        raise LibraryError("library_other_model", library=library, model=meta.model, dim=meta.dim, encoder=encoder.name)


def example_queries(images: ImageDb, library: str, n: int = 6) -> list[str]:
    """Queries to offer as examples: the library's most frequent short captions or OCR lines (in a sample of
    EXAMPLE_SAMPLE images), else FALLBACK_EXAMPLES when it has fewer than three."""
    counts: dict[str, int] = {}
    ids = list(itertools.islice(images.ids(library), EXAMPLE_SAMPLE))
    for meta in images.get_meta_many(library, ids).values():
        texts = list(meta.captions) + ((meta.text or "").splitlines())
        for text in {t.strip() for t in texts}:
            if 2 <= len(text) <= 16:
                counts[text] = counts.get(text, 0) + 1
    ranked = sorted(counts, key=lambda t: (-counts[t], t))
    return ranked[:n] if len(ranked) >= min(n, 3) else FALLBACK_EXAMPLES[:n]
