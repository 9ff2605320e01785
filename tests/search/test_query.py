"""Reading a query (searchcore/query.py): quoted words, exclusions and every required Chinese time expression, with
dates computed here from the `today` the reading is given; `searchcore understand` and POST /api/understand."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from searchcore.config import Settings
from searchcore.engine import Engine
from searchcore.errors import QueryError
from searchcore.models.encoder import Encoder
from searchcore.query import understand
from tests.support import CliRun, Served, torch_engine

TODAY = dt.date(2026, 3, 4)  # a Wednesday; last year 2025, the year before 2024
D = dt.timedelta(days=1)
MONDAY = TODAY - TODAY.weekday() * D


def period(query: str, today: dt.date = TODAY) -> tuple[dt.date | None, dt.date | None]:
    reading = understand(query, today)
    return reading.since, reading.until


EXPECTED = {
    "今天": (TODAY, TODAY),
    "昨天": (TODAY - D, TODAY - D),
    "前天": (TODAY - 2 * D, TODAY - 2 * D),
    "本周": (MONDAY, MONDAY + 6 * D),
    "这周": (MONDAY, MONDAY + 6 * D),
    "上周": (MONDAY - 7 * D, MONDAY - D),
    "本月": (dt.date(2026, 3, 1), dt.date(2026, 3, 31)),
    "这个月": (dt.date(2026, 3, 1), dt.date(2026, 3, 31)),
    "上个月": (dt.date(2026, 2, 1), dt.date(2026, 2, 28)),
    "今年": (dt.date(2026, 1, 1), dt.date(2026, 12, 31)),
    "去年": (dt.date(2025, 1, 1), dt.date(2025, 12, 31)),
    "前年": (dt.date(2024, 1, 1), dt.date(2024, 12, 31)),
    "2023年": (dt.date(2023, 1, 1), dt.date(2023, 12, 31)),
    "2024年2月": (dt.date(2024, 2, 1), dt.date(2024, 2, 29)),
    "2024年2月9日": (dt.date(2024, 2, 9), dt.date(2024, 2, 9)),
    "2024-02-09": (dt.date(2024, 2, 9), dt.date(2024, 2, 9)),
    "2024/2/9": (dt.date(2024, 2, 9), dt.date(2024, 2, 9)),
    "2024.02.09": (dt.date(2024, 2, 9), dt.date(2024, 2, 9)),
    "最近3天": (TODAY - 2 * D, TODAY),
    "最近三天": (TODAY - 2 * D, TODAY),
    "近两周": (TODAY - 13 * D, TODAY),
    "过去一个月": (dt.date(2026, 2, 5), TODAY),
    "最近十天": (TODAY - 9 * D, TODAY),
    "过去2年": (dt.date(2024, 3, 5), TODAY),
    "近十二个月": (dt.date(2025, 3, 5), TODAY),
    "今年春天": (dt.date(2026, 3, 1), dt.date(2026, 5, 31)),
    "去年夏天": (dt.date(2025, 6, 1), dt.date(2025, 8, 31)),
    "去年秋季": (dt.date(2025, 9, 1), dt.date(2025, 11, 30)),
    "去年冬天": (dt.date(2025, 12, 1), dt.date(2026, 2, 28)),
    "2023年冬天": (dt.date(2023, 12, 1), dt.date(2024, 2, 29)),
    "去年元旦": (dt.date(2025, 1, 1), dt.date(2025, 1, 1)),
    "去年五一": (dt.date(2025, 5, 1), dt.date(2025, 5, 5)),
    "2024年劳动节": (dt.date(2024, 5, 1), dt.date(2024, 5, 5)),
    "去年国庆": (dt.date(2025, 10, 1), dt.date(2025, 10, 7)),
    "前年国庆节": (dt.date(2024, 10, 1), dt.date(2024, 10, 7)),
    # official dates: 春节 2024-02-10, 2025-01-29, 2026-02-17; 中秋 2024-09-17, 2025-10-06, 2026-09-25
    "前年春节": (dt.date(2024, 2, 10), dt.date(2024, 2, 16)),
    "去年春节": (dt.date(2025, 1, 29), dt.date(2025, 2, 4)),
    "今年春节": (dt.date(2026, 2, 17), dt.date(2026, 2, 23)),
    "2024年中秋": (dt.date(2024, 9, 17), dt.date(2024, 9, 17)),
    "去年中秋节": (dt.date(2025, 10, 6), dt.date(2025, 10, 6)),
    "今年中秋": (dt.date(2026, 9, 25), dt.date(2026, 9, 25)),
}


@pytest.mark.parametrize("words", list(EXPECTED))
def test_every_required_time_expression_becomes_its_dates(words: str) -> None:
    assert period(words) == EXPECTED[words]
    assert understand(f"{words}的猫", TODAY).text == "猫"


def test_weeks_are_iso_weeks_from_monday_to_sunday() -> None:
    sunday = dt.date(2026, 3, 8)
    assert period("本周", sunday) == (dt.date(2026, 3, 2), sunday)
    assert period("上周", dt.date(2026, 3, 9)) == (dt.date(2026, 3, 2), sunday)
    assert period("上个月", dt.date(2026, 1, 15)) == (dt.date(2025, 12, 1), dt.date(2025, 12, 31))


def test_particles_beside_a_time_phrase_go_with_it() -> None:
    for query in ("去年夏天海边的日落", "在去年夏天海边的日落", "去年夏天的海边的日落", "去年夏天拍的海边的日落",
                  "去年夏天拍摄的海边的日落", "去年夏天时海边的日落", "海边的日落 去年夏天"):
        reading = understand(query, TODAY)
        assert (reading.text, reading.since, reading.until) == ("海边的日落", dt.date(2025, 6, 1),
                                                                dt.date(2025, 8, 31)), query


def test_a_text_of_only_photo_words_is_empty() -> None:
    for query in ("上个月的照片", "上个月的图片", "上个月拍的相片", "上个月的视频"):
        reading = understand(query, TODAY)
        assert reading.text == "" and reading.dated, query
    assert understand("照片", TODAY).text == "照片", "without time words it is what is asked for"


def test_bare_seasons_and_holidays_stay_content() -> None:
    for query in ("冬天的雪山", "夏天的海边", "春节的烟花", "中秋的月亮", "国庆的广场", "秋天的树叶", "元旦"):
        reading = understand(query, TODAY)
        assert (reading.text, reading.since, reading.until) == (query, None, None), query


def test_quoted_phrases_in_every_quote_style_must_appear() -> None:
    reading = understand('"生日快乐" 蛋糕', TODAY)
    assert (reading.text, reading.phrases) == ("蛋糕", ["生日快乐"])
    assert understand("“生日快乐”「蛋糕」『蜡烛』", TODAY).phrases == ["生日快乐", "蛋糕", "蜡烛"]
    alone = understand("「会议室」", TODAY)
    assert (alone.text, alone.phrases) == ("会议室", ["会议室"]), "with no rest the phrase itself is encoded"
    mixed = understand('去年 "生日快乐" 蛋糕 -蜡烛', TODAY)
    assert mixed.to_json() == {"text": "蛋糕", "since": "2025-01-01", "until": "2025-12-31",
                               "phrases": ["生日快乐"], "exclude": ["蜡烛"]}


def test_literal_and_undated_readings_keep_the_query_as_typed() -> None:
    assert understand('去年夏天 "日落"', TODAY, literal=True).to_json() == {
        "text": '去年夏天 "日落"', "since": None, "until": None, "phrases": [], "exclude": []}
    assert understand("去年夏天的日落", TODAY, dates=False).text == "去年夏天的日落"


def test_impossible_dates_stay_text_and_disjoint_periods_are_refused() -> None:
    assert period("2024年13月") == (None, None)
    with pytest.raises(QueryError, match="do not overlap"):
        understand("去年 今年", TODAY)
    with pytest.raises(QueryError, match="only excludes"):
        understand("-圆形", TODAY)


def test_understand_command_prints_the_reading(settings: Settings, cli_in_process: CliRun) -> None:
    code, out, err = cli_in_process(settings, "understand", "去年夏天海边的日落", "--json")
    assert code == 0, err
    last = dt.date.today().year - 1
    assert json.loads(out) == {"text": "海边的日落", "since": f"{last}-06-01", "until": f"{last}-08-31",
                               "phrases": [], "exclude": []}
    code, out, _ = cli_in_process(settings, "understand", "昨天的猫")
    yesterday = dt.date.today() - D
    assert code == 0 and out.strip() == f"{yesterday} – {yesterday} · 猫"
    code, _, err = cli_in_process(settings, "understand", "-猫 -狗")
    assert code == 1 and "only excludes" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, torch_encoder: Encoder) -> Iterator[Engine]:
    """An engine with no library: reading a query needs none."""
    with torch_engine(tmp_path_factory.mktemp("understand"), model_cache, torch_encoder) as eng:
        yield eng


def test_understand_endpoint_returns_the_reading(served: Served) -> None:
    with httpx.Client(base_url=served.url) as http:
        found = http.post("/api/understand", json={"text": '上个月 "生日快乐" 蛋糕 -蜡烛'})
        assert found.status_code == 200, found.text
        first = dt.date.today().replace(day=1)
        last_month = (first - D).replace(day=1)
        assert found.json() == {"text": "蛋糕", "since": last_month.isoformat(), "until": (first - D).isoformat(),
                                "phrases": ["生日快乐"], "exclude": ["蜡烛"]}
        refused = http.post("/api/understand", json={"text": "  "})
        assert refused.status_code == 400 and refused.json()["kind"] == "query_empty"
