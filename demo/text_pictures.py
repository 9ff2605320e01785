"""Synthetic pictures of words: signs and notices in four Noto CJK faces, on coloured noisy backgrounds, one or
two lines each, some lines mixing Latin letters and digits. Each picture's lines are returned with it, so a test
knows what it says and which fragments only it holds."""

from __future__ import annotations

import random
import unicodedata
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from searchcore.stores.text_index import normalise

FONTS = [Path("/usr/share/fonts/opentype/noto") / name for name in
         ("NotoSansCJK-Regular.ttc", "NotoSansCJK-Bold.ttc", "NotoSerifCJK-Regular.ttc", "NotoSerifCJK-Bold.ttc")]
WORDS = ["会议室", "三楼", "火锅", "食材", "超市", "小心", "地滑", "禁止", "吸烟", "停车场", "出口", "入口", "电梯",
         "楼梯", "营业", "时间", "欢迎", "光临", "今日", "特价", "牛肉", "拉面", "咖啡", "奶茶", "面包", "水果",
         "蔬菜", "海鲜", "烧烤", "饺子", "包子", "米线", "药店", "银行", "医院", "学校", "图书馆", "博物馆",
         "公园", "地铁站", "公交", "卫生间", "洗手间", "充电", "维修", "快递", "外卖", "打折", "促销", "会员",
         "优惠", "开业", "庆典", "新年", "快乐", "生日", "蛋糕", "鲜花", "眼镜", "手机", "电脑", "照相", "复印",
         "打印", "理发", "美容", "健身", "游泳", "瑜伽", "书店", "文具", "玩具", "服装", "鞋店", "宠物", "医疗",
         "安全", "通道", "请勿", "喧哗", "排队", "等候", "前台", "办公室", "仓库", "厨房", "餐厅", "酒店", "宾馆"]
LATIN = ["WiFi", "ATM", "KTV", "VIP", "iPhone 15", "B2", "24小时", "3楼", "5折", "A区", "USB", "No.8", "100元",
         "7天", "Open", "2号门"]


def line(rng: random.Random, latin: bool) -> str:
    """One line of two or three words, with a Latin or digit piece in it when asked."""
    words = rng.sample(WORDS, rng.randint(2, 3))
    if latin:
        words.insert(rng.randint(0, len(words)), rng.choice(LATIN))
    return "".join(words)


def text_picture(lines: list[str], rng: random.Random, size: tuple[int, int] = (640, 360)) -> Image.Image:
    """The lines drawn large in one face on a coloured, noisy background, with dark or light ink to contrast."""
    w, h = size
    base = np.array([rng.randint(60, 250) for _ in range(3)], dtype=np.float32)
    noise = np.random.default_rng(rng.getrandbits(64)).normal(0.0, rng.uniform(4.0, 12.0), (h, w, 1))
    image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")
    ink = (15, 15, 15) if base.mean() > 140 else (250, 250, 245)
    font = ImageFont.truetype(str(rng.choice(FONTS)), rng.choice([36, 42, 48]))
    pen = ImageDraw.Draw(image)
    top = rng.randint(40, 90)
    for text in lines:
        pen.text((rng.randint(20, 50), top), text, fill=ink, font=font)
        top += int(font.size) + rng.randint(30, 60)
    return image


def write_text_pictures(root: Path, n: int, seed: int = 0) -> dict[str, list[str]]:
    """n pictures of words under root (sign0000.png ...), no line shared; returns each picture's lines by name."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    said: dict[str, list[str]] = {}
    seen: set[str] = set()
    while len(said) < n:
        lines = [line(rng, rng.random() < 0.3) for _ in range(rng.randint(1, 2))]
        if any(t in seen for t in lines) or len(set(lines)) < len(lines):
            continue
        seen.update(lines)
        name = f"sign{len(said):04d}.png"
        text_picture(lines, rng).save(root / name)
        said[name] = lines
    return said


def fragments(text: str, shortest: int = 2, longest: int = 6) -> list[str]:
    """Every contiguous piece of a line from `shortest` to `longest` pieces long, where a piece is one Chinese
    character or one whole run of Latin letters or digits (a fragment does not cut a word like WiFi in two)."""
    pieces: list[tuple[int, int]] = []
    for i, ch in enumerate(text):
        latin = ch.isascii() and ch.isalnum()
        if latin and pieces and text[pieces[-1][1] - 1].isascii() and text[pieces[-1][1] - 1].isalnum() \
                and pieces[-1][1] == i:
            pieces[-1] = (pieces[-1][0], i + 1)
        elif not ch.isspace() and unicodedata.category(ch)[0] in "LN":
            pieces.append((i, i + 1))
    return [text[pieces[a][0]:pieces[b - 1][1]] for a in range(len(pieces))
            for b in range(a + shortest, min(a + longest, len(pieces)) + 1)]


def unique_fragments(said: dict[str, list[str]], others: list[str]) -> list[tuple[str, str]]:
    """(fragment, picture) for every fragment of each picture's lines that no other picture nor text holds."""
    def flat(text: str) -> str:
        return "".join(normalise(text).split())  # as the index compares them

    texts = {name: flat("\n".join(lines)) for name, lines in said.items()}
    rest = [flat(t) for t in others]
    out: list[tuple[str, str]] = []
    for name, lines in said.items():
        for fragment in dict.fromkeys(f for text in lines for f in fragments(text)):
            key = flat(fragment)
            if sum(key in t for t in texts.values()) == 1 and not any(key in t for t in rest):
                out.append((fragment, name))
    return out
