"""What the UI writes: gallery captions, the detail view's lines, the query's words highlighted in a
picture's text, and ingest, duplicate and reindex reports, each in the request's language."""

from __future__ import annotations

import html
import math
import unicodedata
from typing import Any

from searchcore.duplicates import DuplicateGroup
from searchcore.indexing.reindex import ReindexStatus
from searchcore.indexing.report import IngestReport
from searchcore.query import Understood
from searchcore.records import SHOWN_BAD_RECORDS, wall_clock
from searchcore.stores.text_index import normalise
from searchcore.web.ui_text import translate

THUMBNAIL = (384, 384)
DETAIL = (2048, 2048)  # a 12-megapixel original is shown at most this large: enough for a screen, and quick
MAX_HIT_TEXT = 2000  # OCR characters kept per hit and highlighted in the detail view
MAX_QUERY_WORD = 64  # characters of a query word looked for in the OCR text
# The detail view shows the cosine as 相似度 and BM25 as 关键词得分, never a fused rank score.
DETAIL_SCORES = [("detail_similarity", "similarity"), ("detail_keyword", "keyword_score")]


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


def duplicate_caption(lang: str, n: int, group: DuplicateGroup, k: int) -> str:
    """ "group N · id · score" for a picture; for a video of a group of copies, its path and length instead."""
    score = f"{group.min_score:.3f}"
    if group.videos:
        video = group.videos[k]
        return translate(lang, "duplicate_video_caption", group=n, path=video.path,
                         length=clock(video.duration), score=score)
    return translate(lang, "duplicate_caption", group=n, id=group.images[k], score=score)


def understood(reading: Understood, lang: str) -> str:
    """理解为：2025-06-01 至 2025-08-31 · 海边的日落, when the query had time words or quoted words; else ""."""
    if not (reading.dated or reading.phrases):
        return ""
    parts = [translate(lang, "understood_dates", since=reading.since, until=reading.until)] if reading.dated else []
    if reading.text and reading.text != " ".join(reading.phrases):
        parts.append(reading.text)
    parts += [f"“{p}”" for p in reading.phrases] + [f"-{w}" for w in reading.exclude]
    return translate(lang, "understood_line", reading=escape(" · ".join(parts)))


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
    lines = [escape(_report_line(report, lang))]
    for bad in report.bad[:SHOWN_BAD_RECORDS]:
        where = f"{bad.file}:{bad.line}" if bad.line else bad.file
        lines.append(f"- {escape(where)}: {escape(bad.reason.render(lang))}")
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


def reindex_text(status: ReindexStatus, lang: str) -> str:
    """A reindex's progress line (with its ETA), or how it ended, in the request's language."""
    if status.state == "failed":
        return translate(lang, "reindex_failed", reason=escape(status.error or ""), old_model=status.old_model)
    report = status.report
    if status.state == "done" and report is not None:
        if report.already:
            return translate(lang, "reindex_already", library=escape(status.library), model=report.model)
        return translate(lang, "reindex_done", library=escape(status.library), model=report.model,
                         encoded=report.encoded, originals=report.from_originals,
                         thumbnails=report.from_thumbnails + report.from_frame_thumbnails, stored=report.from_store,
                         frames=report.from_videos + report.from_frame_thumbnails)
    eta = status.eta_seconds
    return translate(lang, "reindex_progress", library=escape(status.library), model=status.model,
                     state=translate(lang, f"reindex_state_{status.state}"), done=status.done, total=status.total,
                     percent=round(100 * status.done / status.total) if status.total else 0,
                     eta=translate(lang, "reindex_eta", eta=clock(eta)) if eta is not None else "",
                     old_model=status.old_model)


def highlight(text: str, query: str) -> str:
    """OCR text as Markdown, each run of it that is a query word or a 2+ character piece of the query in <mark>;
    both are folded as the keyword index folds them (`normalise`: NFKC, traditional as simplified, lower case),
    so 會議室 is marked for 会议室 and ＳＡＬＥ for sale."""
    words = [w[:MAX_QUERY_WORD] for w in normalise(query).split()]
    text = text[:MAX_HIT_TEXT]
    folded, origin = _folded(text)
    marked = [False] * len(text)

    def mark(first: int, last: int) -> None:  # a run of the folded text: the characters of the text it came from
        for j in range(first, last):
            for k in origin[j]:
                marked[k] = True

    for word in words:
        start = folded.find(word)
        while start >= 0:
            mark(start, start + len(word))
            start = folded.find(word, start + 1)
    for word in words:
        for i in range(len(folded)):  # the longest piece of the word that starts at i
            end = i + 2
            while end <= len(folded) and folded[i:end] in word:
                end += 1
            if end - 1 - i >= 2:
                mark(i, end - 1)
    out, start = [], 0
    for i in range(1, len(text) + 1):
        if i == len(text) or marked[i] != marked[start]:
            piece = "  \n".join(escape(line) for line in text[start:i].split("\n"))
            out.append(f"<mark>{piece}</mark>" if marked[start] and piece.strip() else piece)
            start = i
    return "".join(out)


def _folded(text: str) -> tuple[str, list[range]]:
    """The text folded a character at a time (with the combining marks that follow it, so that e and U+0301
    fold to é as the whole text would), and for each folded character the characters of the text it came from
    (NFKC may turn one character into several, ﬁ into fi, and lower case may too, İ into i̇)."""
    folded: list[str] = []
    origin: list[range] = []
    start = 0
    for end in range(1, len(text) + 1):
        if end == len(text) or not unicodedata.combining(text[end]):
            piece = normalise(text[start:end])
            folded.append(piece)
            origin += [range(start, end)] * len(piece)
            start = end
    return "".join(folded), origin


def taken_text(seconds: int) -> str:
    """When a picture was taken (naive wall-clock seconds, as EXIF gives them) as YYYY-MM-DD HH:MM."""
    return wall_clock(seconds).strftime("%Y-%m-%d %H:%M")


def score_line(hit: dict[str, Any], lang: str) -> str:
    """The detail view's first line: the rank, then the similarity and keyword score when known."""
    scores = [f"{translate(lang, key)} {hit[field]:.4f}" for key, field in DETAIL_SCORES if hit.get(field) is not None]
    return " · ".join([f"**#{hit['rank']}**", *scores])


def words_read(text: str | None, state: dict[str, Any], lang: str) -> list[str]:
    """The detail lines of the words read in a picture, the query's in <mark>."""
    if not text:
        return []
    return ["", translate(lang, "detail_text"), "", highlight(text, state.get("query") or "")]


def escape(text: str) -> str:
    """Text shown inside Markdown, with its markup characters taken literally."""
    return "".join("\\" + ch if ch in "\\`*_[]<>#|" else ch for ch in text)
