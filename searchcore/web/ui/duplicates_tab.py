"""The Duplicates tab: groups of near-identical pictures and videos in the chosen library."""

from __future__ import annotations

import gradio as gr

from searchcore.config import DUPLICATE_THRESHOLD
from searchcore.duplicates import find_duplicates
from searchcore.errors import SearchcoreError
from searchcore.sources.imaging import stored_picture
from searchcore.web.ui.formatting import THUMBNAIL, duplicate_caption, escape
from searchcore.web.ui.handlers import Handlers, throttled, warn
from searchcore.web.ui.search_tab import Gallery
from searchcore.web.ui_text import I18N, language, translate

SHOWN_DUPLICATE_GROUPS = 50
SHOWN_PER_GROUP = 8


class DuplicatesHandlers(Handlers):
    """The duplicates tab's handler."""

    def duplicates(self, library: str | None, threshold: float, request: gr.Request | None = None,
                   progress: gr.Progress = gr.Progress()) -> tuple[Gallery, str]:
        """Groups of near-identical images, each image captioned "group N · id · score"."""
        lang = language(request)
        name = library or self.engine.settings.library
        try:
            with self.metrics.backend("duplicates"):
                groups = find_duplicates(self.engine.stores, name, threshold,
                                         progress=throttled(progress, lang, "comparing", "pairs_unit"))
                shown = groups[:SHOWN_DUPLICATE_GROUPS]
                stored = self.engine.get_images([i for g in shown for i in g.images[:SHOWN_PER_GROUP]], name)
        except SearchcoreError as exc:
            warn(lang, "failed", reason=exc)
            return [], ""
        level = f"{float(threshold):.2f}"
        if not groups:
            return [], translate(lang, "no_duplicates", library=escape(name), threshold=level)
        gallery = [(stored_picture(stored[i].data, THUMBNAIL), duplicate_caption(lang, n, group, k))
                   for n, group in enumerate(shown, 1) for k, i in enumerate(group.images[:SHOWN_PER_GROUP])
                   if i in stored]
        status = translate(lang, "duplicates_line", groups=len(groups), library=escape(name), threshold=level)
        if len(groups) > len(shown):
            status += translate(lang, "duplicates_shown", shown=len(shown))
        return gallery, status


def duplicates_tab(app: DuplicatesHandlers, library: gr.Dropdown) -> None:
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
