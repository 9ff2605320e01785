"""The set every precision is judged on (tests/e2e/test_fidelity.py, bench/bench_precision.py): near-ties, clear gaps.

Each class has plain pictures the model scores almost alike (the near-ties where a reduced precision may swap
two) and varied ones that it scores clearly apart: another canvas shape and size, a small or large shape, a
darker background, a second shape of another colour beside it, a blur. Texts are five paraphrases per class.
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw, ImageFilter

from demo.shapes import CLASSES, COLORS, caption_variants, draw


def varied(color: str, shape: str, rng: random.Random) -> Image.Image:
    """One picture of the class that differs from its plain ones in a way the model sees."""
    size = (rng.randint(64, 200), rng.randint(64, 200))
    picture = draw(color, shape, rng, size)
    kind = rng.randrange(4)
    if kind == 0:  # a darker background
        picture = Image.eval(picture, lambda v: int(v * rng.uniform(0.55, 0.8)))
    elif kind == 1:  # a second, smaller shape of another colour
        other = rng.choice([c for c in COLORS if c != color])
        pen = ImageDraw.Draw(picture)
        w, h = picture.size
        r = min(w, h) * rng.uniform(0.08, 0.16)
        x, y = rng.uniform(r, w - r), rng.uniform(r, h - r)
        pen.ellipse([x - r, y - r, x + r, y + r], fill=COLORS[other])
    elif kind == 2:
        picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 3.0)))
    return picture


def fidelity_set(plain: int = 10, varied_per_class: int = 6, seed: int = 5
                 ) -> tuple[list[Image.Image], list[int], list[str], list[int]]:
    """(pictures, each one's class, texts, each text's class): plain then varied pictures of every class."""
    rng = random.Random(seed)
    pictures, classes = [], []
    for index, (color, shape) in enumerate(CLASSES):
        for _ in range(plain):
            pictures.append(draw(color, shape, rng))
            classes.append(index)
        for _ in range(varied_per_class):
            pictures.append(varied(color, shape, rng))
            classes.append(index)
    texts, text_classes = [], []
    for index, (color, shape) in enumerate(CLASSES):
        for text in caption_variants(color, shape):
            texts.append(text)
            text_classes.append(index)
    return pictures, classes, texts, text_classes


def right_answers(classes: list[int], text_classes: list[int]) -> list[set[int]]:
    """Each text's right picture columns: the pictures of its class."""
    by_class: dict[int, set[int]] = {}
    for column, cls in enumerate(classes):
        by_class.setdefault(cls, set()).add(column)
    return [by_class[cls] for cls in text_classes]
