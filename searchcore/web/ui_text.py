"""The UI's words in English and Chinese, and which of the two a request gets.

Static text (labels, buttons, tabs) goes to the browser through gr.I18n and is translated there; text
made at run time (status lines with counts, warnings) is formatted here, in the request's language. Both
read the same table, so one key holds a string's two versions side by side.
"""

from __future__ import annotations

import re
from typing import Any

import gradio as gr

from searchcore.indexing.uploads import UploadRefused

LANGUAGES = ("en", "zh")
PAGE_SIZE = 24  # results on one gallery page (the top-k slider's info names it)

# key: (English, Chinese). Keys must not be one of Gradio's own top-level keys ("status", "label", "image",
# "common", ...): the browser merges both tables, and a clash shows "[object Object]".
TEXT: dict[str, tuple[str, str]] = {
    # Page and tabs
    "title": ("# 以文搜图 · Chinese text-to-image search", "# 以文搜图 · 中文图片搜索"),
    "tab_search": ("Search", "搜索"),
    "tab_duplicates": ("Duplicates", "重复图片"),
    "tab_build": ("Build", "建库"),
    # Search tab
    "query_label": ("Describe the picture", "描述图片"),
    "query_placeholder": ("e.g. 海边的日落 (a sunset by the sea)", "例如：海边的日落"),
    "library_label": ("Library", "图库"),
    "top_k_label": ("Results in all", "结果总数"),
    "top_k_info": (f"Shown {PAGE_SIZE} a page", f"每页显示 {PAGE_SIZE} 张"),
    "search_button": ("Search", "搜索"),
    "examples_label": ("Examples", "示例"),
    "filters_accordion": ("Filters", "筛选"),
    "folder_label": ("Folder", "文件夹"),
    "folder_placeholder": ("e.g. 2024/旅行", "例如：2024/旅行"),
    "folder_info": ("Only images under this folder of the ingested folder", "只搜索所导入文件夹中这个子文件夹下的图片"),
    "since_label": ("Taken on or after (YYYY-MM-DD)", "拍摄日期不早于（YYYY-MM-DD）"),
    "until_label": ("Taken on or before (YYYY-MM-DD)", "拍摄日期不晚于（YYYY-MM-DD）"),
    "date_info": ("From the photo's EXIF, else the file's time", "取自照片的 EXIF，没有则用文件时间"),
    "exclude_label": ("Exclude", "排除"),
    "exclude_placeholder": ("e.g. 圆形", "例如：圆形"),
    "exclude_info": ("Leaves out pictures whose words hold these, and pushes down those that look like them; "
                     "-词 in the query works too",
                     "不要文字里含这些词的图片，并把看起来像的图片排到后面；也可在描述里写 -词"),
    "min_similarity_label": ("Minimum similarity", "最低相似度"),
    "min_similarity_info": ("0: show all; the README says which values suit the model",
                            "0 表示全部显示；合适的取值见 README"),
    "mode_label": ("Match by", "检索方式"),
    "mode_info": ("Keyword and hybrid also match the words read in the pictures",
                  "关键词和混合检索还会匹配图片中识别出的文字"),
    "mode_default": ("Library default", "图库默认"),
    "mode_semantic": ("Meaning", "语义"),
    "mode_keyword": ("Keywords", "关键词"),
    "mode_hybrid": ("Hybrid", "混合"),
    "image_accordion": ("Search by image", "以图搜图"),
    "query_image_label": ("Query image", "查询图片"),
    "image_button": ("Search by image", "以图搜图"),
    "status_label": ("Status", "状态"),
    "results_label": ("Results", "结果"),
    "previous_button": ("← Previous page", "← 上一页"),
    "next_button": ("Next page →", "下一页 →"),
    "selected_label": ("Selected image", "所选图片"),
    "image_id_label": ("Image id", "图片 ID"),
    "more_button": ("More like this", "找相似图片"),
    # Duplicates tab
    "threshold_label": ("Similarity threshold", "相似度阈值"),
    "threshold_info": ("1.00: identical; lower also groups looser copies", "1.00 表示完全相同；越低越宽松"),
    "duplicates_button": ("Find duplicates", "查找重复图片"),
    "duplicates_gallery_label": ("Groups of duplicates", "重复图片组"),
    # Build tab
    "writes_disabled": ("**Ingest and drop are disabled:**", "**导入和删除已停用：**"),
    "source_label": ("Source", "来源"),
    "source_dataset": ("Chinese-CLIP dataset", "Chinese-CLIP 数据集"),
    "source_folder": ("Folder on the server", "服务器上的文件夹"),
    "source_upload": ("Uploaded images", "上传的图片"),
    "dataset_folder_label": ("Dataset folder on the server ({split}_imgs.tsv or lmdb/)",
                             "服务器上的数据集文件夹（{split}_imgs.tsv 或 lmdb/）"),
    "split_label": ("Split", "数据划分"),
    "image_folder_label": ("Folder of images on the server", "服务器上的图片文件夹"),
    "uploads_label": ("Images", "图片"),
    "library_name_label": ("Library name", "图库名称"),
    "ingest_button": ("Ingest", "导入"),
    "sync_label": ("Remove pictures deleted from the folder (--sync)", "同步删除：移除文件夹中已删除的图片（--sync）"),
    "ocr_label": ("Read the words in the pictures (OCR, for keyword search)",
                  "识别图片中的文字（OCR，用于关键词搜索）"),
    "summary_label": ("Summary", "摘要"),
    "libraries_label": ("Libraries", "图库列表"),
    "refresh_button": ("Refresh the list", "刷新列表"),
    "drop_name_label": ("Library to drop", "要删除的图库"),
    "drop_button": ("Drop library…", "删除图库…"),
    "confirm_button": ("Yes, delete it", "确认删除"),
    "cancel_button": ("Cancel", "取消"),
    "column_library": ("library", "图库"),
    "column_images": ("images", "图片数"),
    "column_model": ("model", "模型"),
    "column_dim": ("dim", "维度"),
    "column_backend": ("backend", "后端"),
    # Made at run time: str.format fields in braces
    "warning_title": ("Warning", "注意"),
    "info_title": ("Info", "提示"),
    "error_title": ("Error", "错误"),
    "results_line": ("{n} results for {what} in library **{library}**",
                     "在图库 **{library}** 中找到{what}的 {n} 个结果"),
    "page_line": (" · page {page} of {pages} · results {first}–{last}",
                  " · 第 {page}/{pages} 页 · 第 {first}–{last} 个"),
    "no_results_line": ("No results in library **{library}**.", "图库 **{library}** 中没有结果。"),
    "empty_library": ("Library {library} has no images yet; ingest some in the Build tab.",
                      "图库 {library} 还没有图片，请先在“建库”页导入。"),
    "no_match": ("No image in library {library} matches the filters.", "图库 {library} 中没有符合筛选条件的图片。"),
    "what_text": ("“{text}”", "“{text}”"),
    "what_threshold": (" at similarity ≥ {threshold}", "（相似度 ≥ {threshold}）"),
    "what_upload": ("the uploaded image", "与上传图片相似"),
    "what_image": ("image {id}", "与图片 {id} 相似"),
    "upload_first": ("Upload an image to search with first.", "请先上传一张用来搜索的图片。"),
    "click_first": ("Click a result first, then ask for more like it.", "请先点击一个结果，再找相似图片。"),
    "failed": ("{reason}", "出错了：{reason}"),
    "detail_similarity": ("similarity", "相似度"),
    "detail_keyword": ("keyword score", "关键词得分"),
    "detail_id": ("id: ", "ID："),
    "detail_size": ("size: ", "尺寸："),
    "detail_source": ("source: ", "来源："),
    "detail_path": ("path: ", "路径："),
    "detail_taken": ("taken: ", "拍摄时间："),
    "detail_text": ("**Words in the picture**", "**图中文字**"),
    "library_line": ("Library **{library}** · {count} images", "图库 **{library}** · {count} 张图片"),
    "updated_line": (" · updated {when}", " · 最近更新 {when}"),
    "duplicates_line": ("{groups} groups of near-identical images in library **{library}** (threshold {threshold})",
                        "图库 **{library}** 中有 {groups} 组几乎相同的图片（阈值 {threshold}）"),
    "duplicates_shown": (" · showing the first {shown}", " · 显示前 {shown} 组"),
    "no_duplicates": ("No near-identical images in library **{library}** at threshold {threshold}.",
                      "阈值 {threshold} 下，图库 **{library}** 中没有几乎相同的图片。"),
    "duplicate_caption": ("group {group} · {id} · {score}", "第 {group} 组 · {id} · {score}"),
    "ingesting": ("Ingesting", "正在导入"),
    "images_unit": ("images", "张"),
    "comparing": ("Comparing every pair of images", "正在两两比较图片"),
    "pairs_unit": ("pairs", "对"),
    "ingest_failed": ("Ingest failed: {reason}", "导入失败：{reason}"),
    "dataset_summary": ("library {library}: {added} added, {present} already present, {bad} bad ({seconds}s)",
                        "图库 {library}：新增 {added} 张，已有 {present} 张，出错 {bad} 个（{seconds} 秒）"),
    "folder_summary": ("library {library}: {added} added, {changed} changed, {unchanged} unchanged, {moved} moved, "
                       "{removed} removed, {bad} bad",
                       "图库 {library}：新增 {added} 张，更新 {changed} 张，未变 {unchanged} 张，移动 {moved} 张，"
                       "移除 {removed} 张，出错 {bad} 个"),
    "folder_copies": (", {present} copies of images already stored", "，另有 {present} 张与已存图片相同"),
    "folder_missing": ("; {missing} files missing from the folder (kept; --sync removes them)",
                       "；文件夹中缺少 {missing} 个文件（已保留；--sync 会移除）"),
    "seconds": (" ({seconds}s)", "（{seconds} 秒）"),
    "more_bad": ("… and {n} more (the CLI's --json lists all)", "…… 另有 {n} 个（命令行的 --json 会全部列出）"),
    "choose_images": ("choose some images to upload first", "请先选择要上传的图片"),
    "too_many_files": ("{n} files is over the limit of {limit} per upload",
                       "{n} 个文件超过了每次上传 {limit} 个的上限"),
    "too_big": ("{name} is over the upload limit of {mb} MB", "{name} 超过了 {mb} MB 的上传上限"),
    "unreadable": ("cannot read the upload {name}: {reason}", "无法读取上传的文件 {name}：{reason}"),
    "not_image_name": ("not an image file name ({suffixes})", "不是图片文件名（{suffixes}）"),
    "path_first": ("enter the {what}'s path first", "请先填写{what}的路径"),
    "what_image_folder": ("image folder", "图片文件夹"),
    "what_dataset_folder": ("dataset folder", "数据集文件夹"),
    "action_ingest": ("ingest", "导入"),
    "action_drop": ("drop", "删除"),
    "disabled": ("{action} is disabled: {reason}.", "{action}已停用：{reason}。"),
    "choose_drop": ("Choose a library to drop.", "请选择要删除的图库。"),
    "confirm_drop": ("Delete library **{library}** from both stores? This cannot be undone.",
                     "要从两个存储中删除图库 **{library}** 吗？此操作无法撤销。"),
    "dropped": ("Dropped library **{library}**.", "已删除图库 **{library}**。"),
    "drop_failed": ("Drop failed: {reason}", "删除失败：{reason}"),
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
