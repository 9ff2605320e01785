"""The Gradio app: Search, Duplicates and Build tabs over one shared Engine, assembled into one gr.Blocks.

Every handler is a plain method of SearchApp (each tab's module holds its handlers and its layout), so tests
call it without a browser, and build_ui wires each one into gr.Blocks with an api_name, so gradio_client can
call it too. Labels are gr.I18n keys that the browser translates; what a handler writes at run time is in the
request's language (English when a test calls it without a request). The UI ships inside the searchcore
package so that installing the package brings it with the engine; app.py only parses flags and launches.
"""

from __future__ import annotations

import gradio as gr
from fastapi import FastAPI

from searchcore.engine import Engine
from searchcore.indexing.uploads import MAX_UPLOAD_BYTES
from searchcore.web.auth import Access
from searchcore.web.metrics import Metrics
from searchcore.web.ui.build_tab import BuildHandlers, build_tab
from searchcore.web.ui.duplicates_tab import DuplicatesHandlers, duplicates_tab
from searchcore.web.ui.search_tab import SearchHandlers, search_tab
from searchcore.web.ui_text import I18N

SEARCH_CONCURRENCY = 4
# Gallery captions ("#rank · score · id · path · date · caption") wrap inside the thumbnail instead of being cut off.
CSS = "#results .caption-label, #duplicates .caption-label { white-space: normal; max-width: 96%; }"


class SearchApp(SearchHandlers, DuplicatesHandlers, BuildHandlers):
    """The UI's handlers over one shared Engine, every tab's; each is safe to call from many sessions at once."""


def build_ui(app: SearchApp) -> gr.Blocks:
    """The Blocks: Search, Duplicates and Build tabs wired to the app's handlers; labels are I18N keys."""
    with gr.Blocks(title="以文搜图 · searchcore", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(I18N("title"))
        chosen = search_tab(app)
        duplicates_tab(app, chosen.library)
        build_tab(app, chosen, demo)
    demo.queue(default_concurrency_limit=SEARCH_CONCURRENCY)
    return demo


def mount(api: FastAPI, engine: Engine, access: Access, metrics: Metrics) -> FastAPI:
    """Mount the UI at / on the API's FastAPI app (behind the --auth login when there are users)."""
    app = SearchApp(engine, access, metrics)
    blocks = build_ui(app)
    api.state.search_app = app
    api.state.blocks = blocks
    return gr.mount_gradio_app(api, blocks, path="/", auth=list(access.users) or None, show_error=False,
                               max_file_size=MAX_UPLOAD_BYTES, ssr_mode=False, footer_links=["api", "gradio"],
                               run_history=False, css=CSS, i18n=I18N)
