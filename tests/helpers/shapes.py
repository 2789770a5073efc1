"""A generated captioned image set for semantic tests: coloured shapes on white ("a red circle")."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220)}
SHAPES = ("circle", "square", "triangle")


def draw(colour: str, shape: str, rng: random.Random, size: int = 48) -> Image.Image:
    image = Image.new("RGB", (size, size), "white")
    pen = ImageDraw.Draw(image)
    r = rng.randint(size // 4, size // 2 - 3)
    cx, cy = rng.randint(r + 1, size - r - 2), rng.randint(r + 1, size - r - 2)
    box = (cx - r, cy - r, cx + r, cy + r)
    fill = tuple(min(255, max(0, c + rng.randint(-25, 25))) for c in COLOURS[colour])
    if shape == "circle":
        pen.ellipse(box, fill=fill)
    elif shape == "square":
        pen.rectangle(box, fill=fill)
    else:
        pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    return image


def caption(colour: str, shape: str) -> str:
    return f"a {colour} {shape}"


def make_set(folder: Path, per_kind: int, seed: int) -> list[tuple[Path, str]]:
    """Write ``per_kind`` PNGs of every colour × shape; returns (path, caption) pairs."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for colour in COLOURS:
        for shape in SHAPES:
            for n in range(per_kind):
                path = folder / f"{colour}_{shape}_{n}.png"
                draw(colour, shape, rng).save(path)
                pairs.append((path, caption(colour, shape)))
    return pairs
