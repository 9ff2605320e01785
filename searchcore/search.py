"""Search: text or image → vector → top-k → image ids with their captions (no image bytes)."""

from __future__ import annotations

import itertools
import logging
import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from searchcore.errors import LibraryError, QueryError
from searchcore.ids import parse_image_id
from searchcore.models.encoder import Encoder
from searchcore.sources.imaging import ImageDecodeError, decode_image
from searchcore.stores.filters import Filters, wall_clock
from searchcore.stores.images import ImageStore
from searchcore.stores.text_index import TextHit, TextIndex, contains_all, normalise, rrf
from searchcore.stores.vectors import Hit, VectorStore

log = logging.getLogger(__name__)

MAX_TOP_K = 1000  # results of one search in all, offset included (the gallery pages through them)
MAX_QUERY_CHARS = 1000
Mode = Literal["semantic", "keyword", "hybrid"]
MODES: tuple[Mode, ...] = get_args(Mode)
EXAMPLE_SAMPLE = 2000  # images whose captions and text suggest the example queries
FALLBACK_EXAMPLES = [  # examples for a library too small to suggest its own: they suit photos
    "海边的日落", "一只猫", "雪山", "生日蛋糕", "城市夜景", "一群人在吃饭"]
FUSION_DEPTH = 100  # how deep each ranking goes into a hybrid fusion (at least the page asked for)
EXCLUDE_WEIGHT = 0.5  # how much of an excluded description's embedding the query gives up (measured: README)
BATCH = 256  # queries encoded and searched together by rank_texts
EXCLUDE_SEPARATORS = re.compile(r"[\s,，、;；]+")
_KEYWORD_SEARCHES = ThreadPoolExecutor(max_workers=4, thread_name_prefix="keyword-search")
VIDEO_DEPTH = 4  # in a library with videos, searches fetch this many times deeper: merged frames leave room
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
                "video": None if self.video is None else self.video.to_json()}


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


def clean_query(text: Any) -> str:
    """The query with control characters removed; empty or whitespace-only is a QueryError."""
    if not isinstance(text, str):
        raise QueryError("query_not_text")
    cleaned = "".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in text).strip()
    if not cleaned:
        raise QueryError("query_empty")
    # Tokenising a huge paste costs time and the model sees 50 tokens at most.
    return cleaned[:MAX_QUERY_CHARS]


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


def split_exclusions(query: str, exclude: Any) -> tuple[str, list[str]]:
    """The query without its `-word` terms, and every excluded word (those and the exclude text's)."""
    if exclude is not None and not isinstance(exclude, str):
        raise QueryError("exclude_not_text")
    kept, excluded = [], [w for w in EXCLUDE_SEPARATORS.split(exclude or "") if w.isprintable() and w]
    for word in query.split():
        if len(word) > 1 and word[0] in "-－":
            excluded.append(word[1:])
        else:
            kept.append(word)
    if not kept:
        raise QueryError("query_only_excludes")
    return " ".join(kept), excluded


def search_text(text: Any, top_k: Any, *, encoder: Callable[[], Encoder], vectors: VectorStore,
                images: ImageStore, library: str, offset: Any = None, filters: Filters | None = None,
                mode: Any = None, texts: TextIndex | None = None, min_similarity: Any = None,
                exclude: Any = None) -> list[SearchResult]:
    """Top-k images for a text query: by meaning (CLIP), by the words in captions and pictures (BM25), or both
    (hybrid, the default when the library has text: pictures whose words contain the query first, then by
    meaning). min_similarity drops images whose cosine with the query is below it; exclude (and `-word` in the
    query) drops images whose words contain an excluded word and pushes down those that look like it."""
    query, excluded = split_exclusions(clean_query(text), exclude)
    page = Page.parse(top_k, offset, filters)
    threshold = parse_min_similarity(min_similarity)
    chosen = parse_mode(mode) or ("hybrid" if texts is not None and texts.exists(library) else "semantic")
    if chosen != "semantic" and texts is None:
        raise QueryError("full_text_missing", mode=chosen)
    if chosen != "semantic" and texts is not None and (why := texts.unsupported()):
        raise why
    if chosen == "keyword" and vectors.meta(library) is None:
        raise LibraryError("library_empty", library=library)
    depth = page.offset + page.top_k
    if chosen != "semantic" or excluded:
        depth = max(FUSION_DEPTH, depth)
    depth = _deeper(depth, images, library)
    # the keyword search runs in Milvus (a server, or Milvus Lite's threads here) while the query is encoded
    words: Future[list[TextHit]] | None = None if chosen == "semantic" or texts is None else \
        _KEYWORD_SEARCHES.submit(texts.search, library, query, depth, filters)
    model = encoder()
    _require_library(vectors, library, model)
    vector, *unwanted = model.encode_texts([query, *([" ".join(excluded)] if excluded else [])])
    vector = np.asarray(vector, dtype=np.float32)
    probe = vector if not unwanted else _without(vector, np.asarray(unwanted[0], dtype=np.float32))
    semantic = [] if chosen == "keyword" else vectors.search(library, probe[None, :], depth, filters)[0]
    keyword = [] if words is None else words.result()
    ranking = rank(chosen, semantic, keyword)
    if excluded:
        ranking = _drop_words(ranking, excluded, images=images, library=library)
    similarity = {h.image_id: h.score for h in semantic} if probe is vector else {}
    # a threshold needs every candidate's similarity; without one, the page's will do
    shown = ranking if threshold is not None else ranking[page.offset:page.offset + page.top_k]
    missing = [h.image_id for h in shown if h.image_id not in similarity]
    for image_id, stored in (vectors.vectors(library, missing) if missing else {}).items():
        similarity[image_id] = float(np.dot(stored, vector))
    if threshold is not None:
        ranking = [h for h in ranking if similarity.get(h.image_id, -math.inf) >= threshold]
    scores = {h.image_id: h.score for h in keyword}
    return hits_to_results(ranking, page, images=images, library=library, similarity=similarity, keyword=scores,
                           by_keyword=chosen == "keyword")


def rank(mode: str, semantic: list[Hit], keyword: list[TextHit]) -> list[Hit]:
    """A mode's ranking, from the semantic and the keyword one."""
    return list(semantic) if mode == "semantic" else list(keyword) if mode == "keyword" else fuse(semantic, keyword)


def rank_texts(queries: Sequence[str], top_k: Any, mode: Any, *, encoder: Callable[[], Encoder],
               vectors: VectorStore, library: str, texts: TextIndex | None = None) -> list[list[Hit]]:
    """The top-k ranking of each of many queries, as search_text ranks one (no threshold, exclusion, filter or
    page, and a video's frames are not merged into moments), in batches: one encoding, one vector search and one
    BM25 search per BATCH queries. For measuring thousands of queries (the fragment tests and bench); a search of
    the app or the CLI goes through search_text."""
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
        semantic = [[] for _ in chunk] if chosen == "keyword" else \
            vectors.search(library, np.asarray(model.encode_texts(chunk), dtype=np.float32), depth)
        keyword: list[list[TextHit]] = [[] for _ in chunk] if chosen == "semantic" or texts is None else \
            texts.search_many(library, chunk, depth)
        out.extend(rank(chosen, s, w)[:k] for s, w in zip(semantic, keyword))
    return out


def fuse(semantic: list[Hit], keyword: list[TextHit]) -> list[Hit]:
    """Hybrid ranking: the images whose words contain the query (or each of its words) first, in reciprocal rank
    fusion of their two rankings; then the rest by meaning alone, so a query no text holds ranks as semantic."""
    full = [h for h in keyword if h.full]
    held = {h.image_id for h in full}
    first = rrf([[h for h in semantic if h.image_id in held], full], len(full))
    return [*first, *(h for h in semantic if h.image_id not in held)]


def _without(vector: np.ndarray, unwanted: np.ndarray) -> np.ndarray:
    """The query's embedding less an excluded description's, normalised again."""
    probe = vector - EXCLUDE_WEIGHT * unwanted
    norm = float(np.linalg.norm(probe))
    return probe / norm if norm > 0 else vector


def _drop_words(ranking: list[Hit], excluded: list[str], *, images: ImageStore, library: str) -> list[Hit]:
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
                 images: ImageStore, library: str, offset: Any = None,
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


def search_similar(image_id: Any, top_k: Any, *, vectors: VectorStore, images: ImageStore,
                   library: str, offset: Any = None, filters: Filters | None = None) -> list[SearchResult]:
    """Top-k images like one already in the library ("more like this")."""
    page = Page.parse(top_k, offset, filters)
    ident = parse_query_id(image_id)
    found = vectors.vectors(library, [ident]) if vectors.meta(library) is not None else {}
    if ident not in found:
        raise QueryError("image_not_in_library", image_id=ident, library=library)
    return search_vector(found[ident], page, vectors=vectors, images=images, library=library)


def search_vector(vector: np.ndarray, page: Page, *, vectors: VectorStore, images: ImageStore,
                  library: str) -> list[SearchResult]:
    """A page of the top images for a query vector, read without their bytes; ids without a stored image are
    left out. The filters apply inside the vector search; ranks count from 1 at the best match."""
    hits = vectors.search(library, np.asarray(vector, dtype=np.float32)[None, :],
                          _deeper(page.offset + page.top_k, images, library), page.filters)[0]
    return hits_to_results(hits, page, images=images, library=library)


def hits_to_results(hits: list[Hit], page: Page, *, images: ImageStore, library: str,
                    similarity: dict[int, float] | None = None, keyword: dict[int, float] | None = None,
                    by_keyword: bool = False) -> list[SearchResult]:
    """The page's results from a ranking of hits (ranks count from 1 at its best), without image bytes. Each
    carries its similarity (the hit's own score when none is given) and its keyword score when it has one; its
    score is the keyword score in a keyword search and its similarity otherwise. A video's matching frames
    merge into moments (see moments)."""
    hits, found = moments(hits, images=images, library=library,
                          media=page.filters.media if page.filters is not None else None)
    hits = hits[page.offset:page.offset + page.top_k]
    stored = images.get_meta_many(library, [h.image_id for h in hits])
    results: list[SearchResult] = []
    for hit in hits:
        meta = stored.get(hit.image_id)
        if meta is None:
            log.warning("library %s: vector %d has no stored image; run `searchcore check --repair`",
                        library, hit.image_id)
            continue
        cosine = hit.score if similarity is None else similarity.get(hit.image_id)
        bm25 = (keyword or {}).get(hit.image_id)
        score = (bm25 if by_keyword else cosine) or 0.0
        results.append(SearchResult(page.offset + len(results) + 1, hit.image_id, score, meta.format,
                                    meta.width, meta.height, meta.captions, _fetcher(images, library, hit.image_id),
                                    meta.path, meta.taken or None, meta.text, cosine, bm25, found.get(hit.image_id)))
    return results


def _deeper(depth: int, images: ImageStore, library: str) -> int:
    """How deep to search so that a page is still full once a video's frames merge into moments."""
    return depth * VIDEO_DEPTH if images.has_videos(library) else depth


def moments(ranking: list[Hit], *, images: ImageStore, library: str,
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


def _fetcher(images: ImageStore, library: str, image_id: int) -> Callable[[], bytes]:
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


def example_queries(images: ImageStore, library: str, n: int = 6) -> list[str]:
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
