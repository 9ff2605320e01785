"""The Search tab: query, filters, examples and search by image above a paged gallery and a detail view."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from searchcore.errors import OriginalUnavailableError, SearchcoreError
from searchcore.indexing.uploads import read_upload
from searchcore.search import FALLBACK_EXAMPLES, MAX_TOP_K, MODES, SORTS, SearchResult
from searchcore.sources.imaging import stored_picture
from searchcore.stores.filters import Filters
from searchcore.stores.images import StoredImage
from searchcore.web.ui.formatting import (
    DETAIL,
    MAX_HIT_TEXT,
    THUMBNAIL,
    caption,
    clock,
    escape,
    moment_text,
    player,
    score_line,
    taken_text,
    understood,
    words_read,
)
from searchcore.web.ui.handlers import Handlers, note, warn
from searchcore.web.ui_text import I18N, PAGE_SIZE, language, translate

log = logging.getLogger(__name__)

DEFAULT_TOP_K = min(96, MAX_TOP_K)
MODE_DEFAULT = "default"  # the library's own: hybrid when it has text (captions, OCR), else semantic
MEDIA = ("all", "image", "video")  # the search tab's media control: pictures and moments of videos, or one kind

Gallery = list[tuple[Image.Image, str]]
Shown = tuple[Gallery, dict[str, Any] | None, str]
Detail = tuple[Any, str, str, Any, str]  # the picture, its Markdown, its id, the detail row, the video player


class SearchHandlers(Handlers):
    """The search tab's handlers.

    Search handlers return (gallery, results state, status line); a SearchcoreError becomes a
    gr.Warning and an empty gallery, so the app keeps serving when a store is down.

    Paging: a search asks the engine once for every result (up to MAX_TOP_K, ids and captions only) and
    keeps the hit list in the session's state; a page turn reads the thumbnails of the next PAGE_SIZE hits
    with one engine.get_images. Searching again with an offset would encode the query again (and need the
    uploaded image again), and pages could shift if the library changed between two clicks.
    """

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
                    warn(lang, "failed", reason=exc)
                    stored = self.engine.get_image(hit["image_id"], state["library"])
        except SearchcoreError as exc:
            warn(lang, "failed", reason=exc)
            return None, "", "", gr.Row(visible=False), ""
        lines = [score_line(hit, lang), f"- {translate(lang, 'detail_id')}`{stored.image_id}`",
                 f"- {translate(lang, 'detail_size')}{stored.width} × {stored.height} {stored.format}"]
        lines += self._about(stored.path, stored.taken, lang)
        if stored.source:
            lines.append(f"- {translate(lang, 'detail_source')}{escape(stored.source)}")
        lines += [f"- {escape(c)}" for c in stored.captions[:10]]
        lines += words_read(stored.text, state, lang)
        return stored_picture(stored.data, DETAIL), "\n".join(lines), str(stored.image_id), gr.Row(visible=True), ""

    def _moment(self, state: dict[str, Any], hit: dict[str, Any], moment: dict[str, Any], frame: StoredImage,
                lang: str) -> Detail:
        """The detail view of a moment: the player on the video file from the moment's start, or the frame and why
        not when the file is gone or changed."""
        library, span = state["library"], moment_text(moment["start"], moment["end"])
        lines = [score_line(hit, lang), f"- {translate(lang, 'detail_moment')}▶ {span} / "
                 f"{clock(moment['duration'])}", f"- {translate(lang, 'detail_id')}`{frame.image_id}`"]
        try:
            video = self.engine.video(moment["video_id"], library)
            self.engine.video_file(moment["video_id"], library)  # gone or changed: the frame, and why
        except SearchcoreError as exc:
            warn(lang, "failed", reason=exc)
            lines += self._about(frame.path, frame.taken, lang) + words_read(frame.text, state, lang)
            return stored_picture(frame.data, DETAIL), "\n".join(lines), str(frame.image_id), gr.Row(visible=True), ""
        lines.append(f"- {translate(lang, 'detail_size')}{video.width} × {video.height}")
        lines += self._about(video.path, video.taken, lang) + words_read(frame.text, state, lang)
        url = self.access.video_url(library, moment["video_id"], signed=True)
        return None, "\n".join(lines), str(frame.image_id), gr.Row(visible=True), player(url, moment["start"],
                                                                                         moment["end"])

    @staticmethod
    def _about(path: str | None, taken: int | None, lang: str) -> list[str]:
        """The detail lines of a file's path and date, when known."""
        lines = [f"- {translate(lang, 'detail_path')}{escape(path)}"] if path else []
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
            warn(lang, "failed", reason=exc)
            return ""
        line = translate(lang, "library_line", library=escape(info.library), count=f"{info.count - info.frames:,}")
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
            note(lang, "no_match" if filtered or understood else "empty_library", library=name)
            line = translate(lang, "no_results_line", library=escape(name))
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
        status = translate(lang, "results_line", n=len(hits), what=escape(state["what"]),
                           library=escape(state["library"]))
        if state.get("understood"):
            status = f"{state['understood']}\n\n{status}"
        if pages > 1:
            status += translate(lang, "page_line", page=page + 1, pages=pages, first=on_page[0]["rank"],
                                last=on_page[-1]["rank"])
        return gallery, {**state, "page": page, "shown": shown}, status


@dataclass
class Chosen:
    """The search tab's library dropdown, and the event arguments that show the chosen library's line and
    examples; the build tab refreshes both after it changes the libraries."""

    library: gr.Dropdown
    view: tuple[Callable[..., Any], gr.Dropdown, list[Any]]


def search_tab(app: SearchHandlers) -> Chosen:
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
    return Chosen(library, library_view)


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


def _nothing(exc: SearchcoreError, lang: str) -> Shown:
    warn(lang, "failed", reason=exc)
    return [], None, ""


def _nothing_asked(request: gr.Request | None, key: str) -> Shown:
    """No results, and a warning that says what to give first."""
    warn(language(request), key)
    return [], None, ""
