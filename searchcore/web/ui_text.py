"""The UI's words in English and Chinese, and which of the two a request gets.

Static text (labels, buttons, tabs) goes to the browser through gr.I18n and is translated there; text
made at run time (status lines with counts, warnings) is formatted here, in the request's language. Both
read the same table, so one key holds a string's two versions side by side.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr

from searchcore.errors import LANGUAGES, SearchcoreError

PAGE_SIZE = 24  # results on one gallery page (the top-k slider's info names it)

# The UI's words in ui_text.json beside this module: {section: {key: [English, Chinese]}}, {page_size} filled in
# here and other {fields} at run time by translate(). Keys must not be one of Gradio's own top-level keys
# ("status", "label", "image", "common", ...): the browser merges both tables, and a clash shows "[object Object]".
TEXT: dict[str, tuple[str, str]] = {
    key: (english.replace("{page_size}", str(PAGE_SIZE)), chinese.replace("{page_size}", str(PAGE_SIZE)))
    for section in json.loads((Path(__file__).parent / "ui_text.json").read_text("utf-8")).values()
    for key, (english, chinese) in section.items()
}

I18N = gr.I18n(**{lang: {key: pair[n] for key, pair in TEXT.items()} for n, lang in enumerate(LANGUAGES)})

# Gradio's page picks its language from navigator.language among its own locales, where the Chinese ones are
# zh-CN and zh-TW (a bare "zh" or "zh-HK" gets English there). Run-time text follows the same rule, so a
# page never mixes the two languages.
CHINESE_LOCALES = {"zh-cn", "zh-tw"}


def language(request: gr.Request | None) -> str:
    """The request's language: "zh" for a browser that prefers Chinese as Gradio's page sees it, else "en"."""
    headers = getattr(request, "headers", None) if request is not None else None
    header = headers.get("accept-language", "") if headers is not None else ""
    return "zh" if preferred_language(header or "") in CHINESE_LOCALES else "en"


def preferred_language(header: str) -> str:
    """The Accept-Language tag with the highest q (the first of equals), lower-cased; "" when there is none."""
    best, best_q = "", 0.0
    for item in header.split(","):
        tag, _, params = item.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if tag and q > best_q:
            best, best_q = tag.strip().lower(), q
    return best


def translate(lang: str, key: str, **values: Any) -> str:
    """One string in a language ("en" or "zh"), its {fields} filled from values (an error in its words)."""
    pair = TEXT[key]
    values = {k: error_text(lang, v) if isinstance(v, BaseException) else v for k, v in values.items()}
    return (pair[1] if lang == "zh" else pair[0]).format(**values)


def error_text(lang: str, exc: BaseException) -> str:
    """An error's message in the request's language: a SearchcoreError from its kind's table entry."""
    return exc.render(lang) if isinstance(exc, SearchcoreError) else str(exc)
