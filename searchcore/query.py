"""Reading a query as people type it: quoted words that must appear, `-word` exclusions, and Chinese time words
that become a date range, leaving the rest for the encoder.

「"生日快乐" 蛋糕」 keeps only pictures whose words hold 生日快乐 and ranks them by 蛋糕; 「去年夏天海边的日落」
searches 海边的日落 among the pictures taken from 1 June to 31 August of last year. Dates are inclusive and relative
to a `today` passed in (the machine's local date by default), so a test can compute them. A season or holiday only
reads as a date after a year (今年, 去年, 前年, 2024年): 「冬天的雪山」 is the look of a winter mountain.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from searchcore.errors import QueryError

MAX_QUERY_CHARS = 1000
EXCLUDE_SEPARATORS = re.compile(r"[\s,，、;；]+")
QUOTES = re.compile(r'"([^"]*)"|“([^”]*)”|「([^」]*)」|『([^』]*)』')
# A remaining text of only these words asks for nothing in particular: the period's pictures, newest first.
MEDIA_WORDS = re.compile(r"(?:\s|的)*(?:照片|图片|相片|视频|图像|相片)?(?:\s|的)*")
_NUMERAL = "零一二两三四五六七八九十百"
_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_YEAR = r"(?P<year>(?:19|20)\d{2})\s*年|(?P<rel_year>今年|去年|前年)"
_PART = (r"(?P<holiday>春节|中秋节?|国庆节?|五一|劳动节|元旦)|(?P<season>[春夏秋冬])(?:天|季)?|"
         r"(?P<month>\d{1,2})\s*月(?:份)?(?:\s*(?P<day>\d{1,2})\s*[日号])?")
TIME = re.compile(
    rf"(?:在\s*)?(?:"
    rf"(?P<iso>(?:19|20)\d{{2}})\s*(?P<sep>[-/.])\s*(?P<iso_m>\d{{1,2}})\s*(?P=sep)\s*(?P<iso_d>\d{{1,2}})"
    rf"|(?:{_YEAR})(?:\s*的?\s*(?:{_PART}))?"
    rf"|(?P<rel_day>今天|昨天|前天)"
    rf"|(?P<rel_week>本周|这周|这一周|这个星期|这星期|本星期|上周|上星期|上个星期|上一周)"
    rf"|(?P<rel_month>本月|这个月|这月|上个月|上月|上一个月)"
    rf"|(?:最近|过去|(?<!附)近)\s*的?\s*(?P<n>\d+|[{_NUMERAL}]+)\s*个?\s*(?P<unit>天|日|周|星期|月|年)"
    rf")(?:\s*(?:拍摄的|拍的|时候的|时候|时的|时|的))?")
SEASONS = {"春": (3, 5), "夏": (6, 8), "秋": (9, 11), "冬": (12, 2)}
# 春节 (the first day of the first lunar month) and 中秋 (the 15th of the eighth), as MMDD for 1950..2099: made
# with lunardate 0.3.0 and checked against the official dates of 2024-2026 in tests/search/test_query.py.
LUNAR_FIRST_YEAR = 1950
SPRING_FESTIVAL = (
    "0217 0206 0127 0214 0203 0124 0212 0131 0218 0208 0128 0215 0205 0125 0213 0202 0121 0209 0130 0217 0206 0127 "
    "0215 0203 0123 0211 0131 0218 0207 0128 0216 0205 0125 0213 0202 0220 0209 0129 0217 0206 0127 0215 0204 0123 "
    "0210 0131 0219 0207 0128 0216 0205 0124 0212 0201 0122 0209 0129 0218 0207 0126 0214 0203 0123 0210 0131 0219 "
    "0208 0128 0216 0205 0125 0212 0201 0122 0210 0129 0217 0206 0126 0213 0203 0123 0211 0131 0219 0208 0128 0215 "
    "0204 0124 0212 0201 0122 0210 0130 0217 0206 0126 0214 0202 0123 0211 0201 0219 0208 0128 0215 0204 0124 0212 "
    "0202 0121 0209 0129 0217 0205 0126 0214 0203 0123 0211 0131 0219 0207 0127 0215 0205 0124 0212 0202 0122 0209 "
    "0129 0217 0206 0126 0214 0203 0124 0210 0130 0218 0207 0127 0215 0205 0125 0212 0201 0121")
MID_AUTUMN = (
    "0926 0915 1003 0922 0911 0930 0919 0908 0927 0917 1005 0924 0913 1002 0920 0910 0929 0918 1006 0926 0915 1003 "
    "0922 0911 0930 0920 0908 0927 0916 1005 0923 0912 1001 0921 0910 0929 0918 1007 0925 0914 1003 0922 0911 0930 "
    "0920 0909 0927 0916 1005 0924 0912 1001 0921 0911 0928 0918 1006 0925 0914 1003 0922 0912 0930 0919 0908 0927 "
    "0915 1004 0924 0913 1001 0921 0910 0929 0917 1006 0925 0915 1003 0922 0912 1001 0919 0908 0927 0916 1004 0924 "
    "0913 1002 0920 0910 0928 0917 1005 0925 0915 1004 0922 0911 0930 0919 0907 0926 0916 1005 0924 0913 1002 0921 "
    "0909 0928 0917 1006 0925 0915 1003 0923 0911 0929 0919 0908 0926 0916 1005 0924 0912 1001 0920 0910 0928 0917 "
    "1006 0926 0914 1003 0922 0911 0929 0918 0908 0927 0916 1005 0924 0913 0930 0920 0909 0929")

Period = tuple[dt.date, dt.date]


@dataclass(frozen=True)
class Understood:
    """What a query asks for: the text to encode, an inclusive date range, words that must appear, excluded words."""

    text: str
    since: dt.date | None = None
    until: dt.date | None = None
    phrases: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """`searchcore understand --json` and POST /api/understand."""
        return {"text": self.text, "since": _iso(self.since), "until": _iso(self.until), "phrases": self.phrases,
                "exclude": self.exclude}

    @property
    def dated(self) -> bool:
        """Whether time words gave a date range."""
        return self.since is not None or self.until is not None


def _iso(day: dt.date | None) -> str | None:
    return None if day is None else day.isoformat()


def clean_query(text: Any) -> str:
    """The query with control characters removed; empty or whitespace-only is a QueryError."""
    if not isinstance(text, str):
        raise QueryError("query_not_text")
    cleaned = "".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in text).strip()
    if not cleaned:
        raise QueryError("query_empty")
    # Tokenising a huge paste costs time and the model sees 50 tokens at most.
    return cleaned[:MAX_QUERY_CHARS]


def split_exclusions(query: str, exclude: Any) -> tuple[str, list[str]]:
    """The query without its `-word` terms, and every excluded word (those and the exclude text's)."""
    if exclude is not None and not isinstance(exclude, str):
        raise QueryError("exclude_not_text")
    kept, excluded = [], [w for w in EXCLUDE_SEPARATORS.split(exclude or "") if w.isprintable() and w]
    for word in query.split():
        if len(word) > 1 and word[0] in "-－":
            excluded.append(word[1:])
        else:
            kept.append(word)
    return " ".join(kept), excluded


def understand(text: Any, today: dt.date | None = None, *, literal: bool = False, dates: bool = True,
               exclude: Any = None) -> Understood:
    """The reading of a query (see the module's docstring). literal keeps quotes and time words as typed (the
    `-word` exclusions still apply); dates=False leaves time words as text, for a library whose pictures have no
    dates. A query that only excludes is a QueryError."""
    query = clean_query(text)
    phrases: list[str] = []
    if not literal:
        phrases = [p for m in QUOTES.finditer(query) if (p := " ".join("".join(g for g in m.groups() if g).split()))]
        query = QUOTES.sub(" ", query)
    rest, excluded = split_exclusions(query, exclude)
    since = until = None
    if not literal and dates:
        rest, period = _time_words(rest, today or dt.date.today())
        if period is not None:
            since, until = period
    rest = " ".join(rest.strip(" ,，。、").split())
    if MEDIA_WORDS.fullmatch(rest) and (since is not None or phrases):
        rest = ""
    if not rest and not phrases and since is None:
        raise QueryError("query_only_excludes" if excluded else "query_empty")
    return Understood(rest or " ".join(phrases), since, until, phrases, excluded)


def _time_words(text: str, today: dt.date) -> tuple[str, Period | None]:
    """The text less its time phrases (and the particles beside them), and the period they name together."""
    periods: list[Period] = []

    def read(match: re.Match[str]) -> str:
        period = _period(match, today)
        if period is None:  # not a real date (2024年13月): left as typed
            return match.group(0)
        periods.append(period)
        return " "

    rest = TIME.sub(read, text)
    if not periods:
        return text, None
    since, until = max(p[0] for p in periods), min(p[1] for p in periods)
    if since > until:
        raise QueryError("time_words_disjoint", periods=" / ".join(f"{a} – {b}" for a, b in periods))
    return rest, (since, until)


def _period(m: re.Match[str], today: dt.date) -> Period | None:
    """The inclusive period one time phrase names, or None when it names no real date."""
    g = m.groupdict()
    try:
        if g["iso"]:
            day = dt.date(int(g["iso"]), int(g["iso_m"]), int(g["iso_d"]))
            return day, day
        if g["year"] or g["rel_year"]:
            year = int(g["year"]) if g["year"] else today.year - ("今年", "去年", "前年").index(g["rel_year"])
            return _in_year(year, g)
        if g["rel_day"]:
            day = today - dt.timedelta(days={"今": 0, "昨": 1, "前": 2}[g["rel_day"][0]])
            return day, day
        if g["rel_week"]:
            monday = today - dt.timedelta(days=today.weekday() + (7 if g["rel_week"][0] == "上" else 0))
            return monday, monday + dt.timedelta(days=6)
        if g["rel_month"]:
            first = today.replace(day=1)
            if g["rel_month"][0] == "上":
                first = (first - dt.timedelta(days=1)).replace(day=1)
            return first, _month_end(first.year, first.month)
        if g["n"]:
            n = _number(g["n"])
            if n is None or n < 1:
                return None
            unit = g["unit"]
            if unit in ("天", "日"):
                start = today - dt.timedelta(days=n - 1)
            elif unit in ("周", "星期"):
                start = today - dt.timedelta(days=7 * n - 1)
            else:
                months = n if unit == "月" else 12 * n
                start = _months_back(today, months) + dt.timedelta(days=1)
            return start, today
    except (ValueError, OverflowError):
        return None
    return None


def _in_year(year: int, g: dict[str, str | None]) -> Period | None:
    """The period of a year, or of a month, day, season or holiday in it."""
    if g["month"]:
        month = int(g["month"])
        if g["day"]:
            day = dt.date(year, month, int(g["day"]))
            return day, day
        return dt.date(year, month, 1), _month_end(year, month)
    if g["season"]:
        first, last = SEASONS[g["season"]]
        end_year = year + 1 if last < first else year
        return dt.date(year, first, 1), _month_end(end_year, last)
    holiday = g["holiday"]
    if holiday:
        if holiday == "元旦":
            return dt.date(year, 1, 1), dt.date(year, 1, 1)
        if holiday in ("五一", "劳动节"):
            return dt.date(year, 5, 1), dt.date(year, 5, 5)
        if holiday.startswith("国庆"):
            return dt.date(year, 10, 1), dt.date(year, 10, 7)
        table = (SPRING_FESTIVAL if holiday == "春节" else MID_AUTUMN).split()
        if not 0 <= year - LUNAR_FIRST_YEAR < len(table):
            return None
        mmdd = table[year - LUNAR_FIRST_YEAR]
        day = dt.date(year, int(mmdd[:2]), int(mmdd[2:]))
        return (day, day + dt.timedelta(days=6)) if holiday == "春节" else (day, day)
    return dt.date(year, 1, 1), dt.date(year, 12, 31)


def _month_end(year: int, month: int) -> dt.date:
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return following - dt.timedelta(days=1)


def _months_back(day: dt.date, months: int) -> dt.date:
    """The same day `months` months earlier (the month's last day when it is shorter)."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    return dt.date(year, month + 1, min(day.day, _month_end(year, month + 1).day))


def _number(text: str) -> int | None:
    """Digits or a Chinese numeral up to 999 (三, 两, 十, 十五, 二十, 一百二十); None for anything else."""
    if text.isdigit():
        return int(text)
    total, current = 0, None
    for ch in text:
        if ch in _DIGITS:
            if current is not None:
                return None
            current = _DIGITS[ch]
        elif ch in "十百":
            total += (1 if current is None else current) * (10 if ch == "十" else 100)
            current = None
        else:
            return None
    return total + (current or 0)
