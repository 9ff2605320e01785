"""The Gradio app: Search, Duplicates and Build tabs over one shared Engine.

Every handler is a plain method of SearchApp, so tests call it without a browser, and
build_ui wires each one into gr.Blocks with an api_name, so gradio_client can call it too.
Labels are gr.I18n keys that the browser translates; what a handler writes at run time is in
the request's language (English when a test calls it without a request). This module ships
inside the searchcore package so that installing the package brings the UI with the engine;
app.py only parses flags and launches.
"""

from __future__ import annotations

import contextlib
import functools
import html
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from fastapi import FastAPI
from PIL import Image

from searchcore.config import DUPLICATE_THRESHOLD
from searchcore.duplicates import DuplicateGroup, find_duplicates
from searchcore.engine import Engine
from searchcore.errors import OriginalUnavailableError, SearchcoreError
from searchcore.indexing.ingest import IngestReport
from searchcore.indexing.reindex import ReindexStatus
from searchcore.indexing.uploads import MAX_UPLOAD_BYTES, MAX_UPLOAD_FILES, NOT_PICTURE, read_upload
from searchcore.query import Understood
from searchcore.records import SHOWN_BAD_RECORDS, wall_clock
from searchcore.search import FALLBACK_EXAMPLES, MAX_TOP_K, MODES, SORTS, SearchResult
from searchcore.sources.chinese_clip import find_splits
from searchcore.sources.datasets import IMAGE_SUFFIXES
from searchcore.sources.imaging import stored_picture
from searchcore.stores.filters import Filters
from searchcore.stores.images import StoredImage
from searchcore.web.auth import Access
from searchcore.web.metrics import Metrics
from searchcore.web.ui_text import I18N, PAGE_SIZE, error_text, language, translate

log = logging.getLogger(__name__)

DEFAULT_TOP_K = min(96, MAX_TOP_K)
SEARCH_CONCURRENCY = 4
THUMBNAIL = (384, 384)
DETAIL = (2048, 2048)  # a 12-megapixel original is shown at most this large: enough for a screen, and quick
SHOWN_DUPLICATE_GROUPS = 50
SHOWN_PER_GROUP = 8
MAX_HIT_TEXT = 2000  # OCR characters kept per hit and highlighted in the detail view
MAX_QUERY_WORD = 64  # characters of a query word looked for in the OCR text
SOURCE_DATASET, SOURCE_FOLDER, SOURCE_UPLOAD = "Chinese-CLIP dataset", "Folder on the server", "Uploaded images"
MODE_DEFAULT = "default"  # the library's own: hybrid when it has text (captions, OCR), else semantic
MEDIA = ("all", "image", "video")  # the search tab's media control: pictures and moments of videos, or one kind
# The detail view shows the cosine as 相似度 and BM25 as 关键词得分, never a fused rank score.
DETAIL_SCORES = [("detail_similarity", "similarity"), ("detail_keyword", "keyword_score")]
LIBRARY_COLUMNS = ["column_library", "column_images", "column_model", "column_dim", "column_backend"]
# Gallery captions ("#rank · score · id · path · date · caption") wrap inside the thumbnail instead of being cut off.
CSS = "#results .caption-label, #duplicates .caption-label { white-space: normal; max-width: 96%; }"

Gallery = list[tuple[Image.Image, str]]
Shown = tuple[Gallery, dict[str, Any] | None, str]
Detail = tuple[Any, str, str, Any, str]  # the picture, its Markdown, its id, the detail row, the video player


class SearchApp:
    """The UI's handlers over one shared Engine; each is safe to call from many sessions at once.

    Search handlers return (gallery, results state, status line); a SearchcoreError becomes a
    gr.Warning and an empty gallery, so the app keeps serving when a store is down.

    Paging: a search asks the engine once for every result (up to MAX_TOP_K, ids and captions only) and
    keeps the hit list in the session's state; a page turn reads the thumbnails of the next PAGE_SIZE hits
    with one engine.get_images. Searching again with an offset would encode the query again (and need the
    uploaded image again), and pages could shift if the library changed between two clicks.
    """

    def __init__(self, engine: Engine, access: Access | None = None, metrics: Metrics | None = None) -> None:
        self.engine = engine
        self.access = access or Access()
        self.metrics = metrics or Metrics()

    # Search tab

    def search(self, text: str, top_k: float, library: str | None, folder: str = "", since: str = "",
               until: str = "", mode: str | None = MODE_DEFAULT, exclude: str = "", min_similarity: float = 0.0,
               media: str = "all", literal: bool = False, cutoff: bool = False, sort: str = "relevance",
               collapse: bool = False, request: gr.Request | None = None) -> Shown:
        """Images and moments of videos for a description, best first, within the folder, date and media
        filters, less excluded words, at least as similar as min_similarity (0: no threshold); the query read as
        search reads it (literal: as typed), cut to the relevant hits, sorted, bursts folded, as asked."""
        lang, query = language(request), text.strip() if isinstance(text, str) else ""  # the engine says why not
        chosen = None if mode in (None, "", MODE_DEFAULT) else mode
        what = translate(lang, "what_text", text=query)
        if min_similarity:
            what += translate(lang, "what_threshold", threshold=f"{float(min_similarity):.2f}")
        reading = ""
        if not literal:
            with contextlib.suppress(SearchcoreError):  # the search itself says why
                reading = understood(self.engine.understand(text, library or None, exclude=exclude or None), lang)
        return self._searched("text", (folder, since, until, media), library, lang, what, lambda filters: (
            self.engine.search_text(text, top_k, library or None, filters=filters, mode=chosen,
                                    exclude=exclude or None, min_similarity=min_similarity or None,
                                    literal=bool(literal), cutoff="auto" if cutoff else None,
                                    sort=sort or "relevance", collapse=bool(collapse))), query=query,
            understood=reading)

    def search_image(self, path: str | None, top_k: float, library: str | None, folder: str = "",
                     since: str = "", until: str = "", media: str = "all", request: gr.Request | None = None
                     ) -> Shown:
        """Images that look like an uploaded one."""
        lang = language(request)
        if not path:
            return _nothing_asked(request, "upload_first")
        try:
            data = read_upload(Path(path))
        except SearchcoreError as exc:
            return _nothing(exc, lang)
        return self._searched("image", (folder, since, until, media), library, lang, translate(lang, "what_upload"),
                              lambda filters: self.engine.search_image(data, top_k, library or None,
                                                                       filters=filters))

    def more_like_this(self, image_id: str | None, top_k: float, library: str | None, folder: str = "",
                       since: str = "", until: str = "", media: str = "all", request: gr.Request | None = None
                       ) -> Shown:
        """Images like one already in the library."""
        if not image_id:
            return _nothing_asked(request, "click_first")
        lang = language(request)
        return self._searched("similar", (folder, since, until, media), library, lang,
                              translate(lang, "what_image", id=image_id),
                              lambda filters: self.engine.search_similar(str(image_id).strip(), top_k,
                                                                         library or None, filters=filters))

    def _searched(self, kind: str, filter_fields: tuple[str, str, str, str], library: str | None, lang: str,
                  what: str, run: Callable[[Filters | None], list[SearchResult]], query: str | None = None,
                  understood: str = "") -> Shown:
        """The first page of a search run within the folder, date and media filters; a SearchcoreError is a
        warning."""
        try:
            filters = Filters.parse(*filter_fields)
            with self.metrics.search(kind):
                results = run(filters or None)
        except SearchcoreError as exc:
            return _nothing(exc, lang)
        return self._shown(results, library, what, lang, filtered=bool(filters), query=query, understood=understood)

    def next_page(self, state: dict[str, Any] | None, request: gr.Request | None = None) -> Shown:
        """The next PAGE_SIZE results of the last search."""
        return self._turn(state, 1, language(request))

    def previous_page(self, state: dict[str, Any] | None, request: gr.Request | None = None) -> Shown:
        """The previous PAGE_SIZE results of the last search."""
        return self._turn(state, -1, language(request))

    def select(self, state: dict[str, Any] | None, evt: gr.SelectData,
               request: gr.Request | None = None) -> Detail:
        """Show a clicked result large, with its metadata and the words read in it; a moment of a video plays in
        the page's one player, from its start."""
        lang = language(request)
        index = evt.index if isinstance(evt.index, int) else -1
        shown = state["shown"] if state else []
        if state is None or not 0 <= index < len(shown):
            return None, "", "", gr.Row(visible=False), ""
        hit = state["hits"][shown[index]]
        moment = hit.get("video")
        try:
            with self.metrics.backend("get image"):
                if moment is not None:  # the frame, for its words; the file is checked before it is played
                    stored = self.engine.get_image(hit["image_id"], state["library"])
                    return self._moment(state, hit, moment, stored, lang)
                try:  # the original: a folder picture's is read from its file
                    stored = self.engine.original(hit["image_id"], state["library"])
                except OriginalUnavailableError as exc:  # gone or changed: its thumbnail, and why
                    _warn(lang, "failed", reason=exc)
                    stored = self.engine.get_image(hit["image_id"], state["library"])
        except SearchcoreError as exc:
            _warn(lang, "failed", reason=exc)
            return None, "", "", gr.Row(visible=False), ""
        lines = [_score_line(hit, lang), f"- {translate(lang, 'detail_id')}`{stored.image_id}`",
                 f"- {translate(lang, 'detail_size')}{stored.width} × {stored.height} {stored.format}"]
        lines += self._about(stored.path, stored.taken, lang)
        if stored.source:
            lines.append(f"- {translate(lang, 'detail_source')}{_escape(stored.source)}")
        lines += [f"- {_escape(c)}" for c in stored.captions[:10]]
        lines += _words(stored.text, state, lang)
        return stored_picture(stored.data, DETAIL), "\n".join(lines), str(stored.image_id), gr.Row(visible=True), ""

    def _moment(self, state: dict[str, Any], hit: dict[str, Any], moment: dict[str, Any], frame: StoredImage,
                lang: str) -> Detail:
        """The detail view of a moment: the player on the video file from the moment's start, or the frame and why
        not when the file is gone or changed."""
        library, span = state["library"], moment_text(moment["start"], moment["end"])
        lines = [_score_line(hit, lang), f"- {translate(lang, 'detail_moment')}▶ {span} / "
                 f"{clock(moment['duration'])}", f"- {translate(lang, 'detail_id')}`{frame.image_id}`"]
        try:
            video = self.engine.video(moment["video_id"], library)
            self.engine.video_file(moment["video_id"], library)  # gone or changed: the frame, and why
        except SearchcoreError as exc:
            _warn(lang, "failed", reason=exc)
            lines += self._about(frame.path, frame.taken, lang) + _words(frame.text, state, lang)
            return stored_picture(frame.data, DETAIL), "\n".join(lines), str(frame.image_id), gr.Row(visible=True), ""
        lines.append(f"- {translate(lang, 'detail_size')}{video.width} × {video.height}")
        lines += self._about(video.path, video.taken, lang) + _words(frame.text, state, lang)
        url = self.access.video_url(library, moment["video_id"], signed=True)
        return None, "\n".join(lines), str(frame.image_id), gr.Row(visible=True), player(url, moment["start"],
                                                                                         moment["end"])

    @staticmethod
    def _about(path: str | None, taken: int | None, lang: str) -> list[str]:
        """The detail lines of a file's path and date, when known."""
        lines = [f"- {translate(lang, 'detail_path')}{_escape(path)}"] if path else []
        if taken:
            lines.append(f"- {translate(lang, 'detail_taken')}{taken_text(taken)}")
        return lines

    def library_view(self, library: str | None, request: gr.Request | None = None) -> tuple[str, Any]:
        """The library line and the example queries, for the library now chosen."""
        return self.library_line(library, request), gr.Dataset(samples=[[q] for q in self.example_queries(library)])

    def library_line(self, library: str | None, request: gr.Request | None = None) -> str:
        """The library's size and when it last changed, as one Markdown line."""
        lang = language(request)
        try:
            with self.metrics.backend("info"):
                info = self.engine.info(library or None)
        except SearchcoreError as exc:
            _warn(lang, "failed", reason=exc)
            return ""
        line = translate(lang, "library_line", library=_escape(info.library), count=f"{info.count - info.frames:,}")
        if info.videos:
            line += translate(lang, "videos_line", videos=f"{info.videos:,}", frames=f"{info.frames:,}")
        if info.updated:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.updated))
            line += translate(lang, "updated_line", when=when)
        return line

    def example_queries(self, library: str | None) -> list[str]:
        """Queries that suit the library (frequent captions and words read in its pictures), else FALLBACK_EXAMPLES."""
        try:
            with self.metrics.backend("examples"):
                found = self.engine.example_queries(library or None)
        except SearchcoreError as exc:
            log.info("no example queries for library %s: %s", library, exc)
            found = []
        return found or FALLBACK_EXAMPLES

    def use_example(self, sample: list[str] | None) -> str:
        """The clicked example, for the query box."""
        return str(sample[0]) if sample else ""

    def _shown(self, results: list[SearchResult], library: str | None, what: str, lang: str, *,
               filtered: bool, query: str | None = None, understood: str = "") -> Shown:
        name = library or self.engine.settings.library
        if not results:
            _info(lang, "no_match" if filtered or understood else "empty_library", library=name)
            line = translate(lang, "no_results_line", library=_escape(name))
            return [], None, f"{understood}\n\n{line}" if understood else line
        state = {"library": name, "what": what, "query": query, "page": 0, "shown": [], "understood": understood,
                 "hits": [_hit(r) for r in results]}
        return self._page(state, 0, lang)

    def _turn(self, state: dict[str, Any] | None, step: int, lang: str) -> Shown:
        if not state:
            return [], None, ""
        return self._page(state, state["page"] + step, lang)

    def _page(self, state: dict[str, Any], page: int, lang: str) -> Shown:
        """One page of the hits in state: its thumbnails read in one call, and the status line."""
        hits = state["hits"]
        pages = math.ceil(len(hits) / PAGE_SIZE)
        page = min(max(page, 0), pages - 1)
        first = page * PAGE_SIZE
        on_page = hits[first:first + PAGE_SIZE]
        # Search reads no image bytes; the gallery reads those of exactly the results it shows, in one call.
        try:
            with self.metrics.backend("get images"):
                stored = self.engine.get_images([h["image_id"] for h in on_page], state["library"])
        except SearchcoreError as exc:
            return _nothing(exc, lang)
        # An image deleted since the search is left out.
        shown = [first + n for n, h in enumerate(on_page) if h["image_id"] in stored]
        gallery = [(stored_picture(stored[hits[i]["image_id"]].data, THUMBNAIL), caption(hits[i], lang))
                   for i in shown]
        status = translate(lang, "results_line", n=len(hits), what=_escape(state["what"]),
                           library=_escape(state["library"]))
        if state.get("understood"):
            status = f"{state['understood']}\n\n{status}"
        if pages > 1:
            status += translate(lang, "page_line", page=page + 1, pages=pages, first=on_page[0]["rank"],
                                last=on_page[-1]["rank"])
        return gallery, {**state, "page": page, "shown": shown}, status

    # Duplicates tab

    def duplicates(self, library: str | None, threshold: float, request: gr.Request | None = None,
                   progress: gr.Progress = gr.Progress()) -> tuple[Gallery, str]:
        """Groups of near-identical images, each image captioned "group N · id · score"."""
        lang = language(request)
        name = library or self.engine.settings.library
        try:
            with self.metrics.backend("duplicates"):
                groups = find_duplicates(self.engine.stores, name, threshold,
                                         progress=_throttled(progress, lang, "comparing", "pairs_unit"))
                shown = groups[:SHOWN_DUPLICATE_GROUPS]
                stored = self.engine.get_images([i for g in shown for i in g.images[:SHOWN_PER_GROUP]], name)
        except SearchcoreError as exc:
            _warn(lang, "failed", reason=exc)
            return [], ""
        level = f"{float(threshold):.2f}"
        if not groups:
            return [], translate(lang, "no_duplicates", library=_escape(name), threshold=level)
        gallery = [(stored_picture(stored[i].data, THUMBNAIL), _duplicate_caption(lang, n, group, k))
                   for n, group in enumerate(shown, 1) for k, i in enumerate(group.images[:SHOWN_PER_GROUP])
                   if i in stored]
        status = translate(lang, "duplicates_line", groups=len(groups), library=_escape(name), threshold=level)
        if len(groups) > len(shown):
            status += translate(lang, "duplicates_shown", shown=len(shown))
        return gallery, status

    # Build tab

    def splits(self, folder: str) -> Any:
        """The split dropdown for a dataset folder."""
        if self.access.refusal or not folder:
            return gr.Dropdown(choices=[], value=None)
        found = find_splits(Path(folder.strip()).expanduser())
        return gr.Dropdown(choices=found, value=found[0] if found else None)

    def ingest(self, source: str, dataset_folder: str, split: str | None, image_folder: str,
               uploads: list[str] | None, library: str, sync: bool = False, ocr: bool = False,
               request: gr.Request | None = None,
               progress: gr.Progress = gr.Progress()) -> tuple[str, list[list[Any]]]:
        """Ingest a dataset split, a server folder or uploaded images; returns a summary and the library table.
        sync (a server folder only) removes the pictures deleted from it; ocr reads the words in new pictures."""
        lang = language(request)
        self._require_write("action_ingest", lang)
        report_progress = _throttled(progress, lang, "ingesting", "images_unit")
        name, ocr = library.strip() or None, bool(ocr)
        try:
            if source == SOURCE_UPLOAD:
                run = functools.partial(self.engine.ingest_uploads, uploads or [], name, ocr=ocr)
            elif source == SOURCE_FOLDER:
                folder = _path(image_folder, SearchcoreError("image_folder_first"))
                run = functools.partial(self.engine.ingest, folder, library=name, sync=bool(sync), ocr=ocr)
            else:
                folder = _path(dataset_folder, SearchcoreError("dataset_folder_first"))
                run = functools.partial(self.engine.ingest, folder, split=split or None, library=name, ocr=ocr)
            with self.metrics.backend("ingest"):
                report = run(progress=report_progress)
            self.metrics.ingested(report)
        except SearchcoreError as exc:
            _warn(lang, "failed", reason=exc)
            return translate(lang, "ingest_failed", reason=_escape(error_text(lang, exc))), self.libraries(request)
        return summary(report, lang), self.libraries(request)

    def libraries(self, request: gr.Request | None = None) -> list[list[Any]]:
        """The library table: name, image count, model, dimension, backends."""
        try:
            with self.metrics.backend("libraries"):
                infos = self.engine.libraries()
        except SearchcoreError as exc:
            _warn(language(request), "failed", reason=exc)
            return []
        return [[i.library, i.count, i.model, i.dim, f"{i.vector_backend} + {i.image_backend}"] for i in infos]

    def library_choices(self, selected: str | None, request: gr.Request | None = None) -> tuple[Any, Any, Any]:
        """Fresh choices for the search tab's library (now `selected`) and the drop and reindex dropdowns."""
        names = [row[0] for row in self.libraries(request)]
        return gr.Dropdown(choices=names, value=selected or None), gr.Dropdown(choices=names), \
            gr.Dropdown(choices=names)

    def ask_drop(self, library: str | None, request: gr.Request | None = None) -> tuple[str, Any]:
        """The confirmation step before a drop."""
        lang = language(request)
        self._require_write("action_drop", lang)
        if not library:
            _warn(lang, "choose_drop")
            return "", gr.Row(visible=False)
        return translate(lang, "confirm_drop", library=_escape(library)), gr.Row(visible=True)

    def drop(self, library: str | None, request: gr.Request | None = None) -> tuple[str, list[list[Any]]]:
        """Delete a library (after the confirmation step); returns a message and the library table."""
        lang = language(request)
        self._require_write("action_drop", lang)
        if not library:
            _warn(lang, "choose_drop")
            return "", self.libraries(request)
        try:
            with self.metrics.backend("drop"):
                self.engine.drop(library)
        except SearchcoreError as exc:
            _warn(lang, "failed", reason=exc)
            return translate(lang, "drop_failed", reason=_escape(error_text(lang, exc))), self.libraries(request)
        log.info("dropped library %s", library)
        return translate(lang, "dropped", library=_escape(library)), self.libraries(request)

    def reindex(self, library: str | None, model: str | None,
                request: gr.Request | None = None) -> tuple[str, Any]:
        """Start moving a library to another model; returns its progress line and the timer that refreshes it."""
        lang = language(request)
        self._require_write("action_reindex", lang)
        if not library or not (model or "").strip():
            _warn(lang, "choose_reindex")
            return "", gr.Timer(active=False)
        try:
            status = self.engine.start_reindex((model or "").strip(), library)
        except SearchcoreError as exc:
            _warn(lang, "failed", reason=exc)
            return translate(lang, "reindex_failed", reason=_escape(error_text(lang, exc)), old_model="its model"
                             if lang == "en" else "原模型"), gr.Timer(active=False)
        return reindex_text(status, lang), gr.Timer(active=True)

    def reindex_progress(self, library: str | None,
                         request: gr.Request | None = None) -> tuple[str, Any, list[list[Any]]]:
        """The reindex's progress line (the timer stops once it has ended) and the library table."""
        lang = language(request)
        try:
            status = self.engine.reindex_status(library) if library else None
        except SearchcoreError:
            status = None
        if status is None:
            return "", gr.Timer(active=False), self.libraries(request)
        running = status.state not in ("done", "failed")
        return reindex_text(status, lang), gr.Timer(active=running), self.libraries(request)

    def table_headers(self, request: gr.Request | None = None) -> Any:
        """The library table's column names in the request's language (gr.I18n does not reach them)."""
        return gr.Dataframe(headers=[translate(language(request), c) for c in LIBRARY_COLUMNS])

    def _require_write(self, action: str, lang: str) -> None:
        # The buttons are disabled too, but anyone can call the endpoint directly.
        if self.access.refusal:
            raise gr.Error(translate(lang, "disabled", action=translate(lang, action), reason=self.access.refusal),
                           title=translate(lang, "error_title"))


def build_ui(app: SearchApp) -> gr.Blocks:
    """The Blocks: Search, Duplicates and Build tabs wired to the app's handlers; labels are I18N keys."""
    with gr.Blocks(title="以文搜图 · searchcore", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(I18N("title"))
        chosen = _search_tab(app)
        _duplicates_tab(app, chosen.library)
        _build_tab(app, chosen, demo)
    demo.queue(default_concurrency_limit=SEARCH_CONCURRENCY)
    return demo


@dataclass
class _Chosen:
    """The search tab's library dropdown, and the event arguments that show the chosen library's line and
    examples; the build tab refreshes both after it changes the libraries."""

    library: gr.Dropdown
    view: tuple[Callable[..., Any], gr.Dropdown, list[Any]]


def _search_tab(app: SearchApp) -> _Chosen:
    """Query, filters, examples and search by image above a paged gallery and a detail view."""
    default = app.engine.settings.library
    with gr.Tab(I18N("tab_search"), id="search"):
        with gr.Row():
            query = gr.Textbox(label=I18N("query_label"), placeholder=I18N("query_placeholder"), scale=4,
                               elem_id="query")
            library = gr.Dropdown([default], value=default, label=I18N("library_label"), allow_custom_value=True,
                                  scale=1, elem_id="library")
        with gr.Row():
            top_k = gr.Slider(1, MAX_TOP_K, value=DEFAULT_TOP_K, step=1, label=I18N("top_k_label"),
                              info=I18N("top_k_info"), scale=2)
            mode = gr.Radio([(I18N(f"mode_{m}"), m) for m in (MODE_DEFAULT, *MODES)], value=MODE_DEFAULT,
                            label=I18N("mode_label"), info=I18N("mode_info"), scale=2, elem_id="mode")
            media = gr.Radio([(I18N(f"media_{m}"), m) for m in MEDIA], value=MEDIA[0], label=I18N("media_label"),
                             info=I18N("media_info"), scale=2, elem_id="media")
            search_btn = gr.Button(I18N("search_button"), variant="primary", scale=1, elem_id="search-button")
        with gr.Row():
            exclude = gr.Textbox("", label=I18N("exclude_label"), placeholder=I18N("exclude_placeholder"),
                                 info=I18N("exclude_info"), scale=3, elem_id="exclude")
            min_similarity = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label=I18N("min_similarity_label"),
                                       info=I18N("min_similarity_info"), scale=2, elem_id="min-similarity")
        with gr.Row():
            literal = gr.Checkbox(label=I18N("literal_label"), value=False, elem_id="literal", scale=1)
            cutoff = gr.Checkbox(label=I18N("cutoff_label"), value=False, elem_id="cutoff", scale=1)
            collapse = gr.Checkbox(label=I18N("collapse_label"), value=False, elem_id="collapse", scale=1)
            sort = gr.Radio([(I18N(f"sort_{s}"), s) for s in SORTS], value=SORTS[0], label=I18N("sort_label"),
                            elem_id="sort", scale=2)
        library_info = gr.Markdown(elem_id="library-info")
        # Each filter starts as "", which makes it optional for gradio_client callers of /search.
        with gr.Accordion(I18N("filters_accordion"), open=False, elem_id="filters"), gr.Row():
            folder = gr.Textbox("", label=I18N("folder_label"), placeholder=I18N("folder_placeholder"),
                                info=I18N("folder_info"), scale=2, elem_id="folder")
            since = gr.Textbox("", label=I18N("since_label"), placeholder="2024-01-01", info=I18N("date_info"),
                               scale=1, elem_id="since")
            until = gr.Textbox("", label=I18N("until_label"), placeholder="2024-12-31", info=I18N("date_info"),
                               scale=1, elem_id="until")
        examples = gr.Dataset(components=[query], samples=[[q] for q in FALLBACK_EXAMPLES],
                              label=I18N("examples_label"), elem_id="examples")
        library_view = (app.library_view, library, [library_info, examples])
        library.change(*library_view, api_visibility="private")
        with gr.Accordion(I18N("image_accordion"), open=False):
            query_image = gr.Image(type="filepath", label=I18N("query_image_label"), sources=["upload", "clipboard"])
            image_btn = gr.Button(I18N("image_button"))
        status = gr.Markdown(label=I18N("status_label"), elem_id="status")
        gallery = gr.Gallery(label=I18N("results_label"), columns=6, height="auto", object_fit="contain",
                             allow_preview=False, elem_id="results")
        results = gr.State(None)
        shown = [gallery, results, status]
        with gr.Row(visible=False) as pager:
            previous_btn = gr.Button(I18N("previous_button"), size="sm", elem_id="previous-page")
            next_btn = gr.Button(I18N("next_button"), size="sm", elem_id="next-page")
        results.change(lambda state: gr.Row(visible=bool(state) and len(state["hits"]) > PAGE_SIZE), results, pager,
                       api_visibility="private")
        with gr.Row(visible=False) as detail:
            with gr.Column(scale=2):
                big = gr.Image(label=I18N("selected_label"), type="pil", interactive=False)
                # The page's one <video>: the gallery shows frames only, so a page of moments loads no video.
                video = gr.HTML(elem_id="player")
            with gr.Column(scale=1):
                meta = gr.Markdown(elem_id="detail")
                selected_id = gr.Textbox(label=I18N("image_id_label"), interactive=False)
                more_btn = gr.Button(I18N("more_button"))
        gallery.select(app.select, results, [big, meta, selected_id, detail, video], api_visibility="private",
                       concurrency_id="search").then(lambda html: gr.Image(visible=not html), video, big,
                                                     api_visibility="private")

        filters = [folder, since, until]
        # Hidden, the player is emptied too, so that a video left playing stops.
        hide_detail = (lambda: (gr.Row(visible=False), ""), None, [detail, video])
        search = (app.search, [query, top_k, library, *filters, mode, exclude, min_similarity, media, literal, cutoff,
                               sort, collapse], shown)
        gr.on([search_btn.click, query.submit], *search, api_name="search", concurrency_id="search").then(
            *hide_detail, api_visibility="private")
        examples.click(app.use_example, examples, query, api_visibility="private").then(  # fill the box, then search
            *search, api_visibility="private", concurrency_id="search").then(*hide_detail, api_visibility="private")
        image_btn.click(app.search_image, [query_image, top_k, library, *filters, media], shown,
                        api_name="search_image", concurrency_id="search").then(*hide_detail, api_visibility="private")
        more_btn.click(app.more_like_this, [selected_id, top_k, library, *filters, media], shown,
                       api_name="more_like_this", concurrency_id="search")
        for button, handler in ((previous_btn, app.previous_page), (next_btn, app.next_page)):
            button.click(handler, results, shown, api_visibility="private", concurrency_id="search").then(
                *hide_detail, api_visibility="private")
    return _Chosen(library, library_view)


def _duplicate_caption(lang: str, n: int, group: DuplicateGroup, k: int) -> str:
    """ "group N · id · score" for a picture; for a video of a group of copies, its path and length instead."""
    score = f"{group.min_score:.3f}"
    if group.videos:
        video = group.videos[k]
        return translate(lang, "duplicate_video_caption", group=n, path=video.path,
                         length=clock(video.duration), score=score)
    return translate(lang, "duplicate_caption", group=n, id=group.images[k], score=score)


def _duplicates_tab(app: SearchApp, library: gr.Dropdown) -> None:
    """Groups of near-identical images in the library the search tab has chosen."""
    with gr.Tab(I18N("tab_duplicates"), id="duplicates"):
        with gr.Row():
            threshold = gr.Slider(0.80, 1.00, value=DUPLICATE_THRESHOLD, step=0.01, label=I18N("threshold_label"),
                                  info=I18N("threshold_info"), scale=4)
            duplicates_btn = gr.Button(I18N("duplicates_button"), variant="primary", scale=1)
        duplicates_status = gr.Markdown(elem_id="duplicates-status")
        duplicates_gallery = gr.Gallery(label=I18N("duplicates_gallery_label"), columns=8, height="auto",
                                        object_fit="contain", allow_preview=False, elem_id="duplicates")
        duplicates_btn.click(app.duplicates, [library, threshold], [duplicates_gallery, duplicates_status],
                             api_name="duplicates", concurrency_id="duplicates", concurrency_limit=1)


def _build_tab(app: SearchApp, chosen: _Chosen, demo: gr.Blocks) -> None:
    """Ingest a source into a library, list the libraries and drop one; the search tab follows every change."""
    closed = app.access.refusal
    writable = closed is None
    with gr.Tab(I18N("tab_build"), id="build"):
        if closed:
            gr.Markdown(I18N("writes_disabled") + f" {closed}.")
        source = gr.Radio([(I18N("source_dataset"), SOURCE_DATASET), (I18N("source_folder"), SOURCE_FOLDER),
                           (I18N("source_upload"), SOURCE_UPLOAD)], value=SOURCE_DATASET,
                          label=I18N("source_label"), interactive=writable)
        with gr.Row(visible=True) as dataset_row:
            dataset_folder = gr.Textbox(label=I18N("dataset_folder_label"), scale=3, interactive=writable,
                                        elem_id="dataset-folder")
            split = gr.Dropdown([], label=I18N("split_label"), scale=1, interactive=writable,
                                allow_custom_value=True, elem_id="split")
        dataset_folder.change(app.splits, dataset_folder, split, api_visibility="private", trigger_mode="always_last")
        with gr.Row(visible=False) as folder_row:
            image_folder = gr.Textbox(label=I18N("image_folder_label"), interactive=writable, scale=3)
            sync = gr.Checkbox(label=I18N("sync_label"), value=False, interactive=writable, scale=1, elem_id="sync")
        with gr.Row(visible=False) as upload_row:
            uploads = gr.File(file_count="multiple", file_types=["image"], interactive=writable,
                              label=I18N("uploads_label") + f" (≤ {MAX_UPLOAD_FILES} × {MAX_UPLOAD_BYTES // 2**20} MB)")
        source.change(lambda choice: [gr.Row(visible=choice == c) for c in (SOURCE_DATASET, SOURCE_FOLDER,
                                                                            SOURCE_UPLOAD)],
                      source, [dataset_row, folder_row, upload_row], api_visibility="private")
        target = gr.Textbox(value=app.engine.settings.library, label=I18N("library_name_label"), interactive=writable,
                            elem_id="target")
        ocr = gr.Checkbox(label=I18N("ocr_label"), value=False, interactive=writable, elem_id="ocr")
        ingest_btn = gr.Button(I18N("ingest_button"), variant="primary", interactive=writable,
                               elem_id="ingest-button")
        build_status = gr.Markdown(label=I18N("summary_label"), elem_id="summary")
        table = gr.Dataframe(headers=[translate("en", c) for c in LIBRARY_COLUMNS], interactive=False,
                             label=I18N("libraries_label"))
        refresh_btn = gr.Button(I18N("refresh_button"), size="sm")
        with gr.Row():
            drop_name = gr.Dropdown([], label=I18N("drop_name_label"), allow_custom_value=True, interactive=writable)
            drop_btn = gr.Button(I18N("drop_button"), variant="stop", interactive=writable)
        with gr.Row():
            reindex_name = gr.Dropdown([], label=I18N("reindex_name_label"), allow_custom_value=True,
                                       interactive=writable, elem_id="reindex-library")
            reindex_model = gr.Textbox(label=I18N("reindex_model_label"), placeholder=I18N("reindex_model_placeholder"),
                                       interactive=writable, elem_id="reindex-model")
            reindex_btn = gr.Button(I18N("reindex_button"), interactive=writable, elem_id="reindex-button")
        reindex_status = gr.Markdown(elem_id="reindex-status")
        reindex_timer = gr.Timer(1.0, active=False)
        with gr.Row(visible=False) as confirm_row:
            confirm_text = gr.Markdown()
            confirm_btn = gr.Button(I18N("confirm_button"), variant="stop")
            cancel_btn = gr.Button(I18N("cancel_button"))

        choices = (app.library_choices, chosen.library, [chosen.library, drop_name, reindex_name])
        ingest_btn.click(app.ingest, [source, dataset_folder, split, image_folder, uploads, target, sync, ocr],
                         [build_status, table], api_name="ingest", concurrency_id="write",
                         concurrency_limit=1).then(  # search the library just built
            app.library_choices, target, [chosen.library, drop_name, reindex_name], api_visibility="private").then(
            *chosen.view, api_visibility="private")  # its new count, even when it was already chosen
        refresh_btn.click(app.libraries, None, table, api_name="libraries").then(*choices, api_visibility="private")
        drop_btn.click(app.ask_drop, drop_name, [confirm_text, confirm_row], api_visibility="private")
        confirm_btn.click(app.drop, drop_name, [build_status, table], api_name="drop", concurrency_id="write",
                          concurrency_limit=1).then(
            lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private").then(
            *choices, api_visibility="private").then(*chosen.view, api_visibility="private")
        cancel_btn.click(lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private")
        # the reindex runs on a thread of the engine: searches go on, and the timer shows its progress
        reindex_btn.click(app.reindex, [reindex_name, reindex_model], [reindex_status, reindex_timer],
                          api_name="reindex", concurrency_id="write", concurrency_limit=1)
        reindex_timer.tick(app.reindex_progress, reindex_name, [reindex_status, reindex_timer, table],
                           api_visibility="private", concurrency_id="reindex-progress")
    demo.load(app.table_headers, None, table, api_visibility="private").then(
        app.libraries, None, table, api_visibility="private").then(
        *choices, api_visibility="private").then(*chosen.view, api_visibility="private")


def reindex_text(status: ReindexStatus, lang: str) -> str:
    """A reindex's progress line (with its ETA), or how it ended, in the request's language."""
    if status.state == "failed":
        return translate(lang, "reindex_failed", reason=_escape(status.error or ""), old_model=status.old_model)
    report = status.report
    if status.state == "done" and report is not None:
        if report.already:
            return translate(lang, "reindex_already", library=_escape(status.library), model=report.model)
        return translate(lang, "reindex_done", library=_escape(status.library), model=report.model,
                         encoded=report.encoded, originals=report.from_originals,
                         thumbnails=report.from_thumbnails + report.from_frame_thumbnails, stored=report.from_store,
                         frames=report.from_videos + report.from_frame_thumbnails)
    eta = status.eta_seconds
    return translate(lang, "reindex_progress", library=_escape(status.library), model=status.model,
                     state=translate(lang, f"reindex_state_{status.state}"), done=status.done, total=status.total,
                     percent=round(100 * status.done / status.total) if status.total else 0,
                     eta=translate(lang, "reindex_eta", eta=clock(eta)) if eta is not None else "",
                     old_model=status.old_model)


def caption(hit: dict[str, Any], lang: str = "en") -> str:
    """A gallery caption: #rank · score · id, then the file's path and date and the first caption, when known; a
    moment of a video starts with ▶ and its time range; a text match and folded similar pictures are marked."""
    score = hit["similarity"] if hit.get("similarity") is not None else hit["score"]
    moment = hit.get("video")
    parts = [f"▶ {moment_text(moment['start'], moment['end'])}"] if moment else []
    parts += [f"#{hit['rank']}", f"{score:.3f}", str(hit["image_id"])]
    if hit["path"]:
        parts.append(hit["path"])
    if hit["taken"]:
        parts.append(taken_text(hit["taken"]))
    if hit.get("text_match"):
        parts.append(translate(lang, "text_match_mark"))
    if hit.get("similar"):
        parts.append(translate(lang, "similar_mark", n=len(hit["similar"])))
    if hit["caption"]:
        parts.append(hit["caption"])
    return " · ".join(parts)


def understood(reading: Understood, lang: str) -> str:
    """理解为：2025-06-01 至 2025-08-31 · 海边的日落, when the query had time words or quoted words; else ""."""
    if not (reading.dated or reading.phrases):
        return ""
    parts = [translate(lang, "understood_dates", since=reading.since, until=reading.until)] if reading.dated else []
    if reading.text and reading.text != " ".join(reading.phrases):
        parts.append(reading.text)
    parts += [f"“{p}”" for p in reading.phrases] + [f"-{w}" for w in reading.exclude]
    return translate(lang, "understood_line", reading=_escape(" · ".join(parts)))


def clock(seconds: float, up: bool = False) -> str:
    """A time in a video as m:ss, or h:mm:ss from an hour on; whole seconds, down (or up, for an end)."""
    whole = max(0, math.ceil(seconds - 1e-6) if up else math.floor(seconds + 1e-6))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def moment_text(start: float, end: float) -> str:
    """A moment's time range, e.g. 0:12–0:18: its start rounded down and its end up, so it covers the moment."""
    return f"{clock(start)}–{clock(end, up=True)}"


def player(url: str, start: float, end: float) -> str:
    """The detail view's one <video>: it loads the file's metadata only, then plays from the moment's start
    (the media fragment #t=start,end seeks there and pauses at the end; play goes on past it)."""
    source = html.escape(f"{url}#t={start:.3f},{end:.3f}", quote=True)
    return (f'<video id="moment" src="{source}" controls autoplay preload="metadata" playsinline '
            'style="width: 100%; max-height: 70vh; background: #000"></video>')


def summary(report: IngestReport, lang: str = "en") -> str:
    """An ingest report as Markdown: counts, then each bad record with its reason."""
    lines = [_escape(_report_line(report, lang))]
    for bad in report.bad[:SHOWN_BAD_RECORDS]:
        where = f"{bad.file}:{bad.line}" if bad.line else bad.file
        reason = bad.reason if bad.reason != NOT_PICTURE else translate(lang, "not_image_name",
                                                                         suffixes=", ".join(IMAGE_SUFFIXES))
        lines.append(f"- {_escape(where)}: {_escape(reason)}")
    if len(report.bad) > SHOWN_BAD_RECORDS:
        lines.append("- " + translate(lang, "more_bad", n=len(report.bad) - SHOWN_BAD_RECORDS))
    return "\n".join(lines)


def _report_line(report: IngestReport, lang: str) -> str:
    if lang != "zh":
        return report.summary()
    counts = {"library": report.library, "added": report.added, "present": report.present, "bad": len(report.bad),
              "changed": report.changed, "unchanged": report.unchanged, "moved": report.moved,
              "removed": report.removed, "missing": report.missing, "seconds": f"{report.seconds:.1f}"}
    if not report.folder:
        return translate(lang, "dataset_summary", **counts)
    line = translate(lang, "folder_summary", **counts)
    if report.present:
        line += translate(lang, "folder_copies", **counts)
    if report.missing:
        line += translate(lang, "folder_missing", **counts)
    return line + translate(lang, "seconds", **counts)


def highlight(text: str, query: str) -> str:
    """OCR text as Markdown, each run of it that is a query word or a 2+ character piece of the query in <mark>."""
    words = [w.casefold()[:MAX_QUERY_WORD] for w in query.split()]
    text = text[:MAX_HIT_TEXT]
    lowered, marked = text.casefold(), [False] * len(text)
    # Case folding keeps these lengths for CJK and ASCII text; anything else is only left unmarked.
    if len(lowered) == len(text):
        for word in words:
            start = lowered.find(word)
            while start >= 0:
                marked[start:start + len(word)] = [True] * len(word)
                start = lowered.find(word, start + 1)
        for word in words:
            for i in range(len(lowered)):  # the longest piece of the word that starts at i
                end = i + 2
                while end <= len(lowered) and lowered[i:end] in word:
                    end += 1
                if end - 1 - i >= 2:
                    marked[i:end - 1] = [True] * (end - 1 - i)
    out, start = [], 0
    for i in range(1, len(text) + 1):
        if i == len(text) or marked[i] != marked[start]:
            piece = "  \n".join(_escape(line) for line in text[start:i].split("\n"))
            out.append(f"<mark>{piece}</mark>" if marked[start] and piece.strip() else piece)
            start = i
    return "".join(out)


def taken_text(seconds: int) -> str:
    """When a picture was taken (naive wall-clock seconds, as EXIF gives them) as YYYY-MM-DD HH:MM."""
    return wall_clock(seconds).strftime("%Y-%m-%d %H:%M")


def _hit(result: SearchResult) -> dict[str, Any]:
    """What the session keeps of a result: enough for its caption and detail view, never its bytes."""
    text = getattr(result, "text", None)
    moment = getattr(result, "video", None)
    video = None if moment is None else {"video_id": moment.video_id, "start": moment.start, "end": moment.end,
                                         "duration": moment.duration}
    return {"rank": result.rank, "image_id": result.image_id, "score": result.score, "video": video,
            "similarity": result.similarity, "keyword_score": result.keyword_score,
            "caption": result.captions[0] if result.captions else "", "path": getattr(result, "path", ""),
            "text_match": getattr(result, "text_match", False), "similar": list(getattr(result, "similar", [])),
            "taken": getattr(result, "taken", None), "text": text[:MAX_HIT_TEXT] if text else None}


def _score_line(hit: dict[str, Any], lang: str) -> str:
    """The detail view's first line: the rank, then the similarity and keyword score when known."""
    scores = [f"{translate(lang, key)} {hit[field]:.4f}" for key, field in DETAIL_SCORES if hit.get(field) is not None]
    return " · ".join([f"**#{hit['rank']}**", *scores])


def _words(text: str | None, state: dict[str, Any], lang: str) -> list[str]:
    """The detail lines of the words read in a picture, the query's in <mark>."""
    if not text:
        return []
    return ["", translate(lang, "detail_text"), "", highlight(text, state.get("query") or "")]


def _warn(lang: str, key: str, **values: Any) -> None:
    """A warning toast, its title and text in the request's language."""
    gr.Warning(translate(lang, key, **values), title=translate(lang, "warning_title"))


def _info(lang: str, key: str, **values: Any) -> None:
    """An info toast, its title and text in the request's language."""
    gr.Info(translate(lang, key, **values), title=translate(lang, "info_title"))


def _nothing(exc: SearchcoreError, lang: str) -> Shown:
    _warn(lang, "failed", reason=exc)
    return [], None, ""


def _nothing_asked(request: gr.Request | None, key: str) -> Shown:
    """No results, and a warning that says what to give first."""
    _warn(language(request), key)
    return [], None, ""


def _path(text: str | None, missing: SearchcoreError) -> Path:
    if not text or not text.strip():
        raise missing
    return Path(text.strip()).expanduser()


def _throttled(progress: gr.Progress, lang: str, desc_key: str, unit_key: str,
               every: float = 0.25) -> Callable[[int, int | None], None]:
    """Engine progress (done, total) → the progress bar, at most a few updates a second."""
    last = 0.0
    desc, unit = translate(lang, desc_key), translate(lang, unit_key)

    def update(done: int, total: int | None) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= every or done == total:
            last = now
            progress((done, total), desc=desc, unit=unit)

    return update


def _escape(text: str) -> str:
    """Text shown inside Markdown, with its markup characters taken literally."""
    return "".join("\\" + ch if ch in "\\`*_[]<>#|" else ch for ch in text)


def mount(api: FastAPI, engine: Engine, access: Access, metrics: Metrics) -> FastAPI:
    """Mount the UI at / on the API's FastAPI app (behind the --auth login when there are users)."""
    app = SearchApp(engine, access, metrics)
    blocks = build_ui(app)
    api.state.search_app = app
    api.state.blocks = blocks
    return gr.mount_gradio_app(api, blocks, path="/", auth=list(access.users) or None, show_error=False,
                               max_file_size=MAX_UPLOAD_BYTES, ssr_mode=False, footer_links=["api", "gradio"],
                               run_history=False, css=CSS, i18n=I18N)
