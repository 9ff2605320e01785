"""The Gradio app: a Search tab and a Build tab over one shared Engine.

Every handler is a plain method of SearchApp, so tests call it without a browser, and
build_ui wires each one into gr.Blocks with an api_name, so gradio_client can call it too.
This module ships inside the searchcore package so that installing the package (or its
wheel in an image) brings the UI with the engine; app.py only parses flags and launches.
"""

from __future__ import annotations

import io
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from fastapi import FastAPI
from PIL import Image

from .auth import Access
from .chinese_clip import find_splits
from .datasets import IMAGE_SUFFIXES
from .engine import Engine
from .errors import SearchcoreError
from .imaging import to_rgb
from .ingest import IngestReport
from .metrics import Metrics
from .records import BadRecord
from .search import MAX_TOP_K, SearchResult

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 20 * 2**20
MAX_UPLOAD_FILES = 200
DEFAULT_TOP_K = 12
SEARCH_CONCURRENCY = 4
THUMBNAIL = (384, 384)
SHOWN_BAD_RECORDS = 50
EXAMPLES = ["红色的圆形", "蓝色的正方形", "绿色的三角形", "黄色的圆形", "紫色的三角形", "黑色的正方形"]
SOURCE_DATASET, SOURCE_FOLDER, SOURCE_UPLOAD = "Chinese-CLIP dataset", "Folder on the server", "Uploaded images"
LIBRARY_HEADERS = ["library", "images", "model", "dim", "backend"]
# Gallery captions ("#rank · score · id · caption") wrap inside the thumbnail instead of being cut off.
CSS = "#results .caption-label { white-space: normal; max-width: 96%; }"

Gallery = list[tuple[Image.Image, str]]
Shown = tuple[Gallery, dict[str, Any] | None, str]


class SearchApp:
    """The UI's handlers over one shared Engine; each is safe to call from many sessions at once.

    Search handlers return (gallery, results state, status line); a SearchcoreError becomes a
    gr.Warning and an empty gallery, so the app keeps serving when a store is down.
    """

    def __init__(self, engine: Engine, access: Access | None = None, metrics: Metrics | None = None) -> None:
        self.engine = engine
        self.access = access or Access()
        self.metrics = metrics or Metrics()

    # Search tab

    def search(self, text: str, top_k: float, library: str | None) -> Shown:
        """Images for a description, best first."""
        try:
            with self.metrics.search("text"):
                results = self.engine.search_text(text, top_k, library or None)
        except SearchcoreError as exc:
            return _nothing(exc)
        return self._shown(results, library, f"“{text.strip()}”")

    def search_image(self, path: str | None, top_k: float, library: str | None) -> Shown:
        """Images that look like an uploaded one."""
        if not path:
            gr.Warning("Upload an image to search with first.")
            return [], None, ""
        try:
            data = _read_upload(Path(path))
            with self.metrics.search("image"):
                results = self.engine.search_image(data, top_k, library or None)
        except SearchcoreError as exc:
            return _nothing(exc)
        return self._shown(results, library, "the uploaded image")

    def more_like_this(self, image_id: str | None, top_k: float, library: str | None) -> Shown:
        """Images like one already in the library."""
        if not image_id:
            gr.Warning("Click a result first, then ask for more like it.")
            return [], None, ""
        try:
            with self.metrics.search("similar"):
                results = self.engine.search_similar(str(image_id).strip(), top_k, library or None)
        except SearchcoreError as exc:
            return _nothing(exc)
        return self._shown(results, library, f"image {image_id}")

    def select(self, state: dict[str, Any] | None, evt: gr.SelectData) -> tuple[Any, str, str, Any]:
        """Show a clicked result large, with its metadata."""
        index = evt.index if isinstance(evt.index, int) else -1
        if state is None or not 0 <= index < len(state["hits"]):
            return None, "", "", gr.Row(visible=False)
        hit = state["hits"][index]
        try:
            with self.metrics.backend("get image"):
                stored = self.engine.get_image(hit["image_id"], state["library"])
        except SearchcoreError as exc:
            gr.Warning(str(exc))
            return None, "", "", gr.Row(visible=False)
        lines = [f"**#{hit['rank']}** · score {hit['score']:.4f}", f"- id: `{stored.image_id}`",
                 f"- size: {stored.width} × {stored.height} {stored.format}"]
        if stored.source:
            lines.append(f"- source: {_escape(stored.source)}")
        lines += [f"- {_escape(c)}" for c in stored.captions[:10]]
        return _picture(stored.data), "\n".join(lines), str(stored.image_id), gr.Row(visible=True)

    def _shown(self, results: list[SearchResult], library: str | None, what: str) -> Shown:
        name = library or self.engine.settings.library
        if not results:
            gr.Info(f"Library {name} has no images yet; ingest some in the Build tab.")
            return [], None, f"No results in library **{name}**."
        # Search reads no image bytes; the gallery reads those of exactly the results it shows, in one call.
        try:
            with self.metrics.backend("get images"):
                stored = self.engine.get_images([r.image_id for r in results], name)
        except SearchcoreError as exc:
            return _nothing(exc)
        results = [r for r in results if r.image_id in stored]  # one dropped since the search is not shown
        gallery = [(_picture(stored[r.image_id].data, THUMBNAIL), caption(r)) for r in results]
        state = {"library": name, "hits": [{"rank": r.rank, "image_id": r.image_id, "score": r.score}
                                           for r in results]}
        return gallery, state, f"{len(results)} results for {_escape(what)} in library **{name}**."

    # Build tab

    def splits(self, folder: str) -> Any:
        """The split dropdown for a dataset folder."""
        if self.access.refusal or not folder:
            return gr.Dropdown(choices=[], value=None)
        found = find_splits(Path(folder.strip()).expanduser())
        return gr.Dropdown(choices=found, value=found[0] if found else None)

    def ingest(self, source: str, dataset_folder: str, split: str | None, image_folder: str,
               uploads: list[str] | None, library: str,
               progress: gr.Progress = gr.Progress()) -> tuple[str, list[list[Any]]]:
        """Ingest a dataset split, a server folder or uploaded images; returns a summary and the library table."""
        self._require_write("ingest")
        report_progress = _throttled(progress)
        try:
            if source == SOURCE_UPLOAD:
                report = self._ingest_uploads(uploads or [], library, report_progress)
            elif source == SOURCE_FOLDER:
                report = self._ingest(_path(image_folder, "image folder"), None, library, report_progress)
            else:
                report = self._ingest(_path(dataset_folder, "dataset folder"), split or None, library,
                                      report_progress)
        except SearchcoreError as exc:
            gr.Warning(str(exc))
            return f"Ingest failed: {_escape(str(exc))}", self.libraries()
        return summary(report), self.libraries()

    def _ingest(self, path: Path, split: str | None, library: str, progress: Callable[[int, int | None], None],
                ) -> IngestReport:
        with self.metrics.backend("ingest"):
            report = self.engine.ingest(path, split=split, library=library.strip() or None, progress=progress)
        self.metrics.ingested(report)
        return report

    def _ingest_uploads(self, uploads: list[str], library: str, progress: Callable[[int, int | None], None],
                        ) -> IngestReport:
        if not uploads:
            raise SearchcoreError("choose some images to upload first")
        if len(uploads) > MAX_UPLOAD_FILES:
            raise SearchcoreError(f"{len(uploads)} files is over the limit of {MAX_UPLOAD_FILES} per upload")
        # A folder of its own per request, so concurrent uploads never see each other's files.
        with tempfile.TemporaryDirectory(prefix="searchcore-upload-") as tmp:
            names = {}
            for number, upload in enumerate(uploads, 1):
                original = Path(upload)
                suffix = original.suffix.lower() if original.suffix.lower() in IMAGE_SUFFIXES else ".img"
                copy = f"{number:04d}{suffix}"
                (Path(tmp) / copy).write_bytes(_read_upload(original))
                names[copy] = original.name
            report = self._ingest(Path(tmp), None, library, progress)
        skipped = [name for copy, name in names.items() if copy.endswith(".img")]
        for bad in report.bad:
            bad.file = names.get(bad.file, bad.file)
        if skipped:
            report.bad += [BadRecord(0, "not an image file name (" + ", ".join(IMAGE_SUFFIXES) + ")", name)
                           for name in skipped]
        return report

    def libraries(self) -> list[list[Any]]:
        """The library table: name, image count, model, dimension, backends."""
        try:
            with self.metrics.backend("libraries"):
                infos = self.engine.libraries()
        except SearchcoreError as exc:
            gr.Warning(str(exc))
            return []
        return [[i.library, i.count, i.model, i.dim, f"{i.vector_backend} + {i.image_backend}"] for i in infos]

    def library_choices(self, selected: str | None) -> tuple[Any, Any]:
        """Fresh choices for the search tab's library (now `selected`) and the drop control's dropdown."""
        names = [row[0] for row in self.libraries()]
        return gr.Dropdown(choices=names, value=selected or None), gr.Dropdown(choices=names)

    def ask_drop(self, library: str | None) -> tuple[str, Any]:
        """The confirmation step before a drop."""
        self._require_write("drop")
        if not library:
            gr.Warning("Choose a library to drop.")
            return "", gr.Row(visible=False)
        return f"Delete library **{_escape(library)}** from both stores? This cannot be undone.", gr.Row(visible=True)

    def drop(self, library: str | None) -> tuple[str, list[list[Any]]]:
        """Delete a library (after the confirmation step); returns a message and the library table."""
        self._require_write("drop")
        if not library:
            gr.Warning("Choose a library to drop.")
            return "", self.libraries()
        try:
            with self.metrics.backend("drop"):
                self.engine.drop(library)
        except SearchcoreError as exc:
            gr.Warning(str(exc))
            return f"Drop failed: {_escape(str(exc))}", self.libraries()
        log.info("dropped library %s", library)
        return f"Dropped library **{_escape(library)}**.", self.libraries()

    def _require_write(self, action: str) -> None:
        # The buttons are disabled too, but anyone can call the endpoint directly.
        if self.access.refusal:
            raise gr.Error(f"{action} is disabled: {self.access.refusal}.")


def build_ui(app: SearchApp) -> gr.Blocks:
    """The Blocks: a Search tab and a Build tab wired to the app's handlers."""
    closed = app.access.refusal
    writable = closed is None
    default = app.engine.settings.library
    with gr.Blocks(title="以文搜图 · searchcore", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# 以文搜图 · Chinese text-to-image search")
        with gr.Tab("Search", id="search"):
            with gr.Row():
                query = gr.Textbox(label="Describe the picture", placeholder="红色的圆形", scale=4,
                                   elem_id="query")
                library = gr.Dropdown([default], value=default, label="Library", allow_custom_value=True,
                                      scale=1, elem_id="library")
            with gr.Row():
                top_k = gr.Slider(1, MAX_TOP_K, value=DEFAULT_TOP_K, step=1, label="Results", scale=4)
                search_btn = gr.Button("Search", variant="primary", scale=1, elem_id="search-button")
            examples = gr.Examples(EXAMPLES, inputs=query, label="Examples")
            with gr.Accordion("Search by image", open=False):
                query_image = gr.Image(type="filepath", label="Query image", sources=["upload", "clipboard"])
                image_btn = gr.Button("Search by image")
            status = gr.Markdown(label="Status", elem_id="status")
            gallery = gr.Gallery(label="Results", columns=6, height="auto", object_fit="contain",
                                 allow_preview=False, elem_id="results")
            results = gr.State(None)
            with gr.Row(visible=False) as detail:
                big = gr.Image(label="Selected image", type="pil", interactive=False, scale=2)
                with gr.Column(scale=1):
                    meta = gr.Markdown(elem_id="detail")
                    selected_id = gr.Textbox(label="Image id", interactive=False)
                    more_btn = gr.Button("More like this")

        with gr.Tab("Build", id="build"):
            if closed:
                gr.Markdown(f"**Ingest and drop are disabled:** {closed}.")
            source = gr.Radio([SOURCE_DATASET, SOURCE_FOLDER, SOURCE_UPLOAD], value=SOURCE_DATASET,
                              label="Source", interactive=writable)
            with gr.Row(visible=True) as dataset_row:
                dataset_folder = gr.Textbox(label="Dataset folder on the server ({split}_imgs.tsv or lmdb/)",
                                            scale=3, interactive=writable, elem_id="dataset-folder")
                split = gr.Dropdown([], label="Split", scale=1, interactive=writable, allow_custom_value=True,
                                    elem_id="split")
            with gr.Row(visible=False) as folder_row:
                image_folder = gr.Textbox(label="Folder of images on the server", interactive=writable)
            with gr.Row(visible=False) as upload_row:
                uploads = gr.File(file_count="multiple", file_types=["image"], interactive=writable,
                                  label=f"Images (up to {MAX_UPLOAD_FILES} files, {MAX_UPLOAD_BYTES // 2**20} MB "
                                        "each)")
            target = gr.Textbox(value=default, label="Library name", interactive=writable, elem_id="target")
            ingest_btn = gr.Button("Ingest", variant="primary", interactive=writable, elem_id="ingest-button")
            build_status = gr.Markdown(label="Summary", elem_id="summary")
            table = gr.Dataframe(headers=LIBRARY_HEADERS, interactive=False, label="Libraries")
            refresh_btn = gr.Button("Refresh the list", size="sm")
            with gr.Row():
                drop_name = gr.Dropdown([], label="Library to drop", allow_custom_value=True, interactive=writable)
                drop_btn = gr.Button("Drop library…", variant="stop", interactive=writable)
            with gr.Row(visible=False) as confirm_row:
                confirm_text = gr.Markdown()
                confirm_btn = gr.Button("Yes, delete it", variant="stop")
                cancel_btn = gr.Button("Cancel")

        shown = [gallery, results, status]
        hide_detail = (lambda: gr.Row(visible=False), None, detail)
        search = (app.search, [query, top_k, library], shown)
        gr.on([search_btn.click, query.submit], *search, api_name="search", concurrency_id="search").then(
            *hide_detail, api_visibility="private")
        # Clicking an example fills the box, then searches; Examples' own run_on_click would pass only the text.
        examples.load_input_event.then(*search, api_visibility="private", concurrency_id="search").then(
            *hide_detail, api_visibility="private")
        image_btn.click(app.search_image, [query_image, top_k, library], shown, api_name="search_image",
                        concurrency_id="search").then(*hide_detail, api_visibility="private")
        more_btn.click(app.more_like_this, [selected_id, top_k, library], shown, api_name="more_like_this",
                       concurrency_id="search")
        gallery.select(app.select, results, [big, meta, selected_id, detail], api_visibility="private",
                       concurrency_id="search")

        def show_source(choice: str) -> list[Any]:
            return [gr.Row(visible=choice == c) for c in (SOURCE_DATASET, SOURCE_FOLDER, SOURCE_UPLOAD)]

        source.change(show_source, source, [dataset_row, folder_row, upload_row], api_visibility="private")
        dataset_folder.change(app.splits, dataset_folder, split, api_visibility="private",
                              trigger_mode="always_last")
        choices = (app.library_choices, library, [library, drop_name])
        ingest_btn.click(app.ingest, [source, dataset_folder, split, image_folder, uploads, target],
                         [build_status, table], api_name="ingest", concurrency_id="write",
                         concurrency_limit=1).then(  # search the library just built
            app.library_choices, target, [library, drop_name], api_visibility="private")
        refresh_btn.click(app.libraries, None, table, api_name="libraries").then(*choices, api_visibility="private")
        drop_btn.click(app.ask_drop, drop_name, [confirm_text, confirm_row], api_visibility="private")
        confirm_btn.click(app.drop, drop_name, [build_status, table], api_name="drop", concurrency_id="write",
                          concurrency_limit=1).then(
            lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private").then(
            *choices, api_visibility="private")
        cancel_btn.click(lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private")
        demo.load(app.libraries, None, table, api_visibility="private").then(*choices, api_visibility="private")
    demo.queue(default_concurrency_limit=SEARCH_CONCURRENCY)
    return demo


def caption(result: SearchResult) -> str:
    """A gallery caption: #rank · score · id · the dataset's first caption."""
    parts = [f"#{result.rank}", f"{result.score:.3f}", str(result.image_id)]
    if result.captions:
        parts.append(result.captions[0])
    return " · ".join(parts)


def summary(report: IngestReport) -> str:
    """An ingest report as Markdown: counts, then each bad record with its reason."""
    lines = [_escape(report.summary())]
    for bad in report.bad[:SHOWN_BAD_RECORDS]:
        where = f"{bad.file}:{bad.line}" if bad.line else bad.file
        lines.append(f"- {_escape(where)}: {_escape(bad.reason)}")
    if len(report.bad) > SHOWN_BAD_RECORDS:
        lines.append(f"- … and {len(report.bad) - SHOWN_BAD_RECORDS} more (the CLI's --json lists all)")
    return "\n".join(lines)


def _nothing(exc: SearchcoreError) -> Shown:
    gr.Warning(str(exc))
    return [], None, ""


def _picture(data: bytes, size: tuple[int, int] | None = None) -> Image.Image:
    """Stored bytes → an RGB picture in memory (a thumbnail when size is given)."""
    image = Image.open(io.BytesIO(data))
    if size is not None:
        image.draft("RGB", size)  # JPEG decodes at a reduced scale: much faster for big photos
    picture = to_rgb(image)
    if size is not None:
        picture.thumbnail(size)
    return picture


def _read_upload(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_UPLOAD_BYTES:
            raise SearchcoreError(f"{path.name} is over the upload limit of {MAX_UPLOAD_BYTES // 2**20} MB")
        return path.read_bytes()
    except OSError as exc:
        raise SearchcoreError(f"cannot read the upload {path.name}: {exc.strerror}") from None


def _path(text: str | None, what: str) -> Path:
    if not text or not text.strip():
        raise SearchcoreError(f"enter the {what}'s path first")
    return Path(text.strip()).expanduser()


def _throttled(progress: gr.Progress, every: float = 0.25) -> Callable[[int, int | None], None]:
    """Engine progress (done, total) → the progress bar, at most a few updates a second."""
    last = 0.0

    def update(done: int, total: int | None) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= every or done == total:
            last = now
            progress((done, total), desc="Ingesting", unit="images")

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
                               run_history=False, css=CSS)
