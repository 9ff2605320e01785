"""The UI's words in English and Chinese, and which of the two a request gets.

Static text (labels, buttons, tabs) goes to the browser through gr.I18n and is translated there; text
made at run time (status lines with counts, warnings) is formatted here, in the request's language. Both
read the same table, so one key holds a string's two versions side by side.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import gradio as gr

from searchcore.indexing.uploads import UploadRefused

LANGUAGES = ("en", "zh")
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


# The engine's messages a user meets in the app, in Chinese: (pattern of the English message, its translation
# with the pattern's groups). A message not listed is shown as the engine wrote it.
ERRORS: list[tuple[re.Pattern[str], str]] = [(re.compile(p, re.S), t) for p, t in [
    (r"^the query is empty", "搜索内容为空：请输入描述，例如 红色的圆形"),
    (r"^the query must be text", "搜索内容必须是文字"),
    (r"^top_k must be", "结果数必须是 1 到 1000 之间的整数"),
    (r"^offset", "翻页超出范围：最多显示 1000 个结果"),
    (r"^since must be a date as YYYY-MM-DD, got (.*)$", r"起始日期必须写成 YYYY-MM-DD，收到 \1"),
    (r"^until must be a date as YYYY-MM-DD, got (.*)$", r"截止日期必须写成 YYYY-MM-DD，收到 \1"),
    (r"^since \((.*)\) is after until \((.*)\)$", r"起始日期（\1）晚于截止日期（\2）"),
    (r"^folder contains characters a path cannot hold here: (.*)$", r"文件夹中含有路径不能使用的字符：\1"),
    (r"^folder must be a relative path inside the library's folder, got (.*)$",
     r"文件夹必须是图库文件夹内的相对路径，收到 \1"),
    (r"^folder is longer than (\d+) characters", r"文件夹路径超过 \1 个字符"),
    (r"^folder must be text", "文件夹必须是文字，例如 2024/旅行"),
    (r"^library '(.*)' does not exist or is empty", r"图库 \1 不存在或为空：请先在“建库”中导入图片"),
    (r"^library '(.*)' does not exist", r"图库 \1 不存在"),
    (r"^library '(.*)' was made before folder and date filters",
     r"图库 \1 创建于筛选功能之前：请运行一次 searchcore migrate --library \1（图片和向量保持不变）"),
    (r"^mode must be one of", "搜索方式必须是 semantic（语义）、keyword（关键词）或 hybrid（混合）"),
    (r"^min_similarity must be", "最低相似度必须是 -1 到 1 之间的数"),
    (r"^the query only excludes", "描述里只有要排除的词：请同时写上要找的内容，例如 红色 -圆形"),
    (r"^keyword and hybrid search need Milvus (\S+) or newer .*? runs (\S+)\.",
     r"关键词和混合搜索需要支持 BM25 全文检索的 Milvus \1 或更新版本；当前服务器版本为 \2。语义搜索不受影响"),
    (r"^the query image cannot be used: (.*)$", r"无法使用这张查询图片：\1"),
    (r"^image (\d+) is not in library '(.*)'", r"图片 \1 不在图库 \2 中"),
    (r"^refusing to remove (\d+) of the (\d+) pictures recorded in (.*?): the folder is empty",
     r"拒绝删除：\3 中记录的 \2 张图片有 \1 张不见了，而文件夹是空的：硬盘或网络盘是否已挂载？没有删除任何图片。"
     r"如果它们确实已被删除，请加上 --allow-mass-removal 再运行"),
    (r"^refusing to remove (\d+) of the (\d+) pictures recorded in (.*?): ",
     r"拒绝删除：\3 中记录的 \2 张图片有 \1 张不见了，一次删除太多（全部或超过一半）。没有删除任何图片。"
     r"如果它们确实已被删除，请加上 --allow-mass-removal 再运行"),
    (r"^the file of image (\d+) \((.*)\) has changed since it was indexed",
     r"图片 \1 的文件（\2）在建库后被改动过：请重新导入它所在的文件夹"),
    (r"^the file of image (\d+) \((.*)\) is not in its folder any more",
     r"图片 \1 的文件（\2）已不在文件夹中；如果文件夹移到了别的硬盘，请运行 searchcore relocate"),
    (r"^(\S+) does not exist$", r"\1 不存在"),
    (r"^(.*) holds no images", r"\1 中没有图片"),
    (r"^threshold must be", "相似度阈值必须是大于 0、不超过 1 的数"),
    (r"^(vector store|image database) (.*)", r"存储后端出错（\1）：\2"),
]]


def error_text(lang: str, exc: BaseException) -> str:
    """An engine error's message in the request's language."""
    if isinstance(exc, UploadRefused):
        return translate(lang, exc.problem, **exc.fields)
    message = str(exc)
    if lang == "zh":
        for pattern, chinese in ERRORS:
            found = pattern.search(message)
            if found:
                return found.expand(chinese)
    return message
