"""The Build tab: ingest a source into a library, list the libraries, drop one, move one to another model."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import gradio as gr

from searchcore.errors import SearchcoreError
from searchcore.indexing.uploads import MAX_UPLOAD_BYTES, MAX_UPLOAD_FILES
from searchcore.sources.chinese_clip import find_splits
from searchcore.web.ui.formatting import escape, reindex_text, summary
from searchcore.web.ui.handlers import Handlers, throttled, warn
from searchcore.web.ui.search_tab import Chosen
from searchcore.web.ui_text import I18N, error_text, language, translate

log = logging.getLogger(__name__)

SOURCE_DATASET, SOURCE_FOLDER, SOURCE_UPLOAD = "Chinese-CLIP dataset", "Folder on the server", "Uploaded images"
LIBRARY_COLUMNS = ["column_library", "column_images", "column_model", "column_dim", "column_backend"]


class BuildHandlers(Handlers):
    """The build tab's handlers: ingest, the library table, drop and reindex; each write checks access."""

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
        report_progress = throttled(progress, lang, "ingesting", "images_unit")
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
            warn(lang, "failed", reason=exc)
            return translate(lang, "ingest_failed", reason=escape(error_text(lang, exc))), self.libraries(request)
        return summary(report, lang), self.libraries(request)

    def libraries(self, request: gr.Request | None = None) -> list[list[Any]]:
        """The library table: name, image count, model, dimension, backends."""
        try:
            with self.metrics.backend("libraries"):
                infos = self.engine.libraries()
        except SearchcoreError as exc:
            warn(language(request), "failed", reason=exc)
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
            warn(lang, "choose_drop")
            return "", gr.Row(visible=False)
        return translate(lang, "confirm_drop", library=escape(library)), gr.Row(visible=True)

    def drop(self, library: str | None, request: gr.Request | None = None) -> tuple[str, list[list[Any]]]:
        """Delete a library (after the confirmation step); returns a message and the library table."""
        lang = language(request)
        self._require_write("action_drop", lang)
        if not library:
            warn(lang, "choose_drop")
            return "", self.libraries(request)
        try:
            with self.metrics.backend("drop"):
                self.engine.drop(library)
        except SearchcoreError as exc:
            warn(lang, "failed", reason=exc)
            return translate(lang, "drop_failed", reason=escape(error_text(lang, exc))), self.libraries(request)
        log.info("dropped library %s", library)
        return translate(lang, "dropped", library=escape(library)), self.libraries(request)

    def reindex(self, library: str | None, model: str | None,
                request: gr.Request | None = None) -> tuple[str, Any]:
        """Start moving a library to another model; returns its progress line and the timer that refreshes it."""
        lang = language(request)
        self._require_write("action_reindex", lang)
        if not library or not (model or "").strip():
            warn(lang, "choose_reindex")
            return "", gr.Timer(active=False)
        try:
            status = self.engine.start_reindex((model or "").strip(), library)
        except SearchcoreError as exc:
            warn(lang, "failed", reason=exc)
            return translate(lang, "reindex_failed", reason=escape(error_text(lang, exc)), old_model="its model"
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


def build_tab(app: BuildHandlers, chosen: Chosen, demo: gr.Blocks) -> None:
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


def _path(text: str | None, missing: SearchcoreError) -> Path:
    if not text or not text.strip():
        raise missing
    return Path(text.strip()).expanduser()
