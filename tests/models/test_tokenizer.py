"""searchcore.models.tokenizer gives cn_clip's token ids for any query, without importing torch."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from searchcore.models.tokenizer import tokenize

ROOT = Path(__file__).resolve().parents[2]

IMAGE_QUERIES = [
    "一只猫", "一只橘猫趴在窗台上晒太阳", "海边的日落", "穿红色连衣裙的女孩", "雪山下的湖泊", "城市夜景",
    "一碗热气腾腾的拉面", "戴眼镜的程序员在写代码", "金毛犬在草地上奔跑", "下雨天撑伞的行人", "故宫的红墙",
    "秋天的银杏叶", "小朋友在公园放风筝", "一杯拿铁咖啡和笔记本电脑", "熊猫吃竹子", "黄山云海", "西湖断桥",
    "婚礼现场的鲜花", "白色的运动鞋", "复古风格的客厅装修", "春节贴对联", "端午节的粽子", "中秋月饼",
    "高铁站台", "无人机航拍的梯田", "长城上的游客", "火锅", "iPhone 15 Pro 手机壳", "2023年的演唱会",
    "NBA 篮球比赛", "宝马X5 SUV", "手绘水彩风景画", "卡通风格的小狗头像", "黑白老照片", "樱花盛开的街道",
    "北京烤鸭", "地铁里看书的人", "夕阳下的剪影", "蓝天白云", "一群鸽子在广场上", "办公室会议", "Hello Kitty 玩偶",
]
CHINESE = "的一是了我不人在他有这个上们来到时大地为子中你说生国年着就那和要她出以会可也你对生能而子那得于着下自之"
RARE_CJK = "㐀㐁䶵𠀀𠀁𪚥𫝀𫠝𬺰豈更﨎丽"
ENGLISH = ["cat", "Dog", "SUNSET", "beach", "mountain", "unaffable", "running", "photo", "New", "York", "a",
           "the", "iPhone", "McDonald's", "don't", "COVID-19", "4K", "HDR", "selfie", "xqzjvw", "Tokenization"]
DIGITS = ["0", "1", "42", "2024", "3.14", "1,000,000", "99%", "$5", "¥100", "１２３", "Ⅷ", "½", "²"]
PUNCT_ASCII = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
PUNCT_FULL = "，。！？、；：“”‘’（）【】《》…—～·「」『』〈〉﹏＃＆＠"
EMOJI = ["😀", "🐱", "🐶", "🌸", "❤️", "👍🏽", "👋🏿", "👨‍👩‍👧‍👦", "👩🏻‍💻", "🏳️‍🌈", "🇨🇳", "🇺🇸", "✨", "🔥", "😂", "🎉"]
ACCENTED = ["café", "niño", "über", "Ångström", "naïve", "résumé", "İstanbul", "straße", "Ǆemal", "ÉCOLE",
            "crème brûlée", "Zoë", "São Paulo", "Ωmega", "ĳssel", "ﬁsh"]
JAPANESE_KOREAN = ["こんにちは", "カタカナ", "東京タワー", "ｶﾀｶﾅ", "ありがとう",
                   "안녕하세요", "서울 야경", "김치찌개", "ㄱㄴㄷ"]
CONTROL = ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\u200b", "\u200d", "\ufeff", "\ufffd", "\u2028", "\u2029",
           "\u00ad", "\u0301", "\ud800"]
WHITESPACE = [" ", "\t", "\n", "\r", "\r\n", "\u3000", "\xa0", "\u2003", "\u202f", "\x0b", "\x0c"]
URLS = ["https://example.com/path?q=猫&x=1", "http://www.baidu.com", "ftp://files.example.org/a_b-c.jpg",
        "user@example.com", "www.test.cn/图片/123.png#top"]
SPECIAL = ["", " ", "   ", "\t\n", "\u3000\u3000", "\x00\x00", "[CLS]", "[SEP]", "[UNK]", "[PAD]", "##", "##ing",
           "a" * 200, "a" * 201, "猫" * 300, "x" * 500 + "一只猫", ("supercalifragilistic" * 11)[:199] + "!x",
           "word " * 80, "我" + " " * 1000 + "你", "ＡＢＣ ａｂｃ", "Ⅻ", "℃", "№"]


def _segment(rng: random.Random) -> str:
    kind = rng.randrange(14)
    if kind == 0:
        return "".join(rng.choices(CHINESE, k=rng.randint(1, 12)))
    if kind == 1:
        return rng.choice(RARE_CJK)
    if kind == 2:
        return " ".join(rng.choices(ENGLISH, k=rng.randint(1, 4)))
    if kind == 3:
        return rng.choice(DIGITS)
    if kind == 4:
        return "".join(rng.choices(PUNCT_ASCII, k=rng.randint(1, 3)))
    if kind == 5:
        return "".join(rng.choices(PUNCT_FULL, k=rng.randint(1, 3)))
    if kind == 6:
        return "".join(rng.choices(EMOJI, k=rng.randint(1, 3)))
    if kind == 7:
        return rng.choice(ACCENTED)
    if kind == 8:
        return rng.choice(JAPANESE_KOREAN)
    if kind == 9:
        return rng.choice(CONTROL)
    if kind == 10:
        return rng.choice(URLS)
    if kind == 11:
        return rng.choice(IMAGE_QUERIES)
    if kind == 12:
        return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(1, 15)))
    # Any code point outside the surrogates, to reach Unicode categories the lists above miss.
    return "".join(chr(rng.choice([rng.randrange(0x20, 0xD800), rng.randrange(0xE000, 0x30000)]))
                   for _ in range(rng.randint(1, 6)))


def build_corpus(size: int = 1200, seed: int = 14) -> list[str]:
    """Fixed queries plus seeded random mixtures of every kind of text above."""
    rng = random.Random(seed)
    corpus = IMAGE_QUERIES + SPECIAL + URLS + EMOJI + ACCENTED + JAPANESE_KOREAN + CONTROL + WHITESPACE
    while len(corpus) < size:
        segments = [_segment(rng) for _ in range(rng.randint(1, 8))]
        if rng.random() < 0.08:
            segments *= rng.randint(10, 30)  # well past 52 tokens
        separators = ["", " ", rng.choice(WHITESPACE)]
        corpus.append("".join(s + rng.choice(separators) for s in segments))
    return corpus


@pytest.fixture(scope="module")
def corpus_and_expected() -> tuple[list[str], np.ndarray]:
    from cn_clip.clip import tokenize as cn_tokenize

    corpus = build_corpus()
    return corpus, cn_tokenize(corpus, context_length=52).numpy()


def test_tokenize_matches_cn_clip_on_whole_corpus(corpus_and_expected: tuple[list[str], np.ndarray]) -> None:
    corpus, expected = corpus_and_expected
    ours = tokenize(corpus, context_length=52)
    assert len(corpus) >= 1000
    assert ours.dtype == np.int64 and ours.shape == (len(corpus), 52)
    assert np.array_equal(ours, expected)


def test_tokenize_matches_cn_clip_per_query(corpus_and_expected: tuple[list[str], np.ndarray]) -> None:
    corpus, expected = corpus_and_expected
    diffs = [f"{text!r}:\n  ours    {ours.tolist()}\n  cn_clip {want.tolist()}"
             for text, want in zip(corpus, expected)
             if not np.array_equal(ours := tokenize([text])[0], want)]
    assert not diffs, f"{len(diffs)} queries differ, first ones:\n" + "\n".join(diffs[:5])


def test_importing_tokenizer_does_not_import_torch() -> None:
    code = "import searchcore.models.tokenizer as t, sys; t.tokenize(['一只猫']); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
