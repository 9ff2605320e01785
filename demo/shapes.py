"""Synthetic pictures of coloured shapes with Chinese captions."""

from __future__ import annotations

import math
import random

import numpy as np
from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "红色": (220, 30, 30),
    "绿色": (30, 170, 50),
    "蓝色": (30, 70, 220),
    "黄色": (240, 210, 20),
    "紫色": (140, 40, 180),
    "黑色": (20, 20, 20),
}
SHAPES: list[str] = ["圆形", "正方形", "三角形"]
CLASSES: list[tuple[str, str]] = [(c, s) for c in COLORS for s in SHAPES]


def caption(color: str, shape: str) -> str:
    """Return the canonical query caption, e.g. "红色的圆形"."""
    return f"{color}的{shape}"


def caption_variants(color: str, shape: str) -> list[str]:
    """Return paraphrases of the caption (canonical form first)."""
    return [
        caption(color, shape),
        f"一个{color}的{shape}",
        f"{color}{shape}",
        f"图片里有一个{color}的{shape}",
        f"一张{color}{shape}的图片",
    ]


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int) -> tuple[int, int, int]:
    """Add small uniform noise to each channel."""
    return tuple(min(255, max(0, v + rng.randint(-amount, amount))) for v in rgb)  # type: ignore[return-value]


def _background(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """Light, low-saturation background with mild grey pixel noise drawn from rng."""
    w, h = size
    base = rng.randint(205, 250)
    tint = np.array([base + rng.randint(-8, 5) for _ in range(3)], dtype=np.float32)
    noise = np.random.default_rng(rng.getrandbits(64)).normal(0.0, rng.uniform(3.0, 8.0), (h, w, 1))
    return Image.fromarray(np.clip(tint + noise, 0, 255).astype(np.uint8), "RGB")


def draw(color: str, shape: str, rng: random.Random, size: tuple[int, int] = (96, 96)) -> Image.Image:
    """Draw one filled shape of the given colour on a light noisy background."""
    w, h = size
    img = _background(size, rng)
    fill = _jitter(COLORS[color], rng, 15)
    side = rng.uniform(0.3, 0.7) * min(w, h)
    cx = rng.uniform(side / 2, w - side / 2)
    cy = rng.uniform(side / 2, h - side / 2)
    r = side / 2
    d = ImageDraw.Draw(img)
    if shape == "圆形":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "正方形":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "三角形":
        a = rng.uniform(-0.15, 0.15)
        angles = [a + k * 2 * math.pi / 3 for k in range(3)]
        # shifted down by r/4 so the (upward) triangle is vertically centred in its box
        d.polygon([(cx + r * math.sin(t), cy - r * math.cos(t) + r / 4) for t in angles], fill=fill)
    else:
        raise ValueError(f"unknown shape: {shape}")
    return img
