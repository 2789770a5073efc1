"""OCR quality and cost: character error rate by text size, on white and on photos, and the
seconds one core spends per picture with and without text.

    python bench/ocr_quality.py [--language ja]

Renders known sentences in Pillow's own font at each size onto a 1600x1200 white page and onto
Debian wallpapers (a light band behind the text, as on a sign or a slide), reads them with
mmsearch's OCR settings (mmsearch.imaging.ocr: longest side 960, one thread) and prints the
character error rate (edit distance / characters) per size. ``--language ja`` renders Japanese
sentences in IPA Gothic (Debian's fonts-ipafont-gothic) and reads them with both engines, the
default (RapidOCR) and Japanese (Tesseract), in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mmsearch.imaging.ocr import read_lines  # noqa: E402

SENTENCES = ["Hotel Sakura receipt 2041", "Quarterly revenue up 12%", "Platform 9 to Lisbon",
             "Fresh bread every morning", "Exit only after 22:00"]  # fmt: skip
SENTENCES_JA = ["ホテルさくらの領収書", "第三四半期の売上は十二％増", "九番線からリスボン行き",
                "毎朝焼きたてのパン", "二十二時以降は出口のみ"]  # fmt: skip
JAPANESE_FONT = "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf"
SIZES = [12, 16, 20, 28, 40, 64]
PHOTOS = sorted(Path("/usr/share/wallpapers").glob("*/contents/images/1920x1080.*"))[:4]


def distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ca != cb))
    return row[-1]


def page(background: Image.Image, size: int, sentences=SENTENCES) -> Image.Image:
    picture = background.convert("RGB").resize((1600, 1200))
    draw = ImageDraw.Draw(picture)
    if sentences is SENTENCES:
        font = ImageFont.load_default(size=size)
    else:
        font = ImageFont.truetype(JAPANESE_FONT, size)
    for n, sentence in enumerate(sentences):
        y = 100 + n * max(2 * size, 60)
        box = draw.textbbox((80, y), sentence, font=font)
        draw.rectangle((box[0] - 8, box[1] - 6, box[2] + 8, box[3] + 6), fill="white")
        draw.text((80, y), sentence, fill="black", font=font)
    return picture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--language", choices=["ja"], default=None)
    args = parser.parse_args()
    backgrounds = [("white", Image.new("RGB", (1600, 1200), "white"))]
    backgrounds += [(p.parts[-4], Image.open(p)) for p in PHOTOS]
    if args.language:
        sentences, separator, engines = SENTENCES_JA, "", [None, args.language]
    else:
        sentences, separator, engines = SENTENCES, " ", [None]
    truth = separator.join(sentences)
    for engine in engines:
        read_lines(backgrounds[0][1], engine)  # load the models
        print(f"engine: {engine or 'default (RapidOCR)'}")
        print(f"{'text px':>8}" + "".join(f"{name:>14}" for name, _ in backgrounds))
        for size in SIZES:
            cells = []
            for _, background in backgrounds:
                picture = page(background, size, sentences)
                found = separator.join(line.text for line in read_lines(picture, engine))
                cells.append(f"{distance(found, truth) / len(truth):14.3f}")
            print(f"{size:>8}" + "".join(cells))
        times = {"with text": [], "without text": []}
        for _, background in backgrounds:
            for kind, picture in (
                ("with text", page(background, 28, sentences)),
                ("without text", background.convert("RGB").resize((1600, 1200))),
            ):
                started = time.perf_counter()
                read_lines(picture, engine)
                times[kind].append(time.perf_counter() - started)
        for kind, values in times.items():
            print(f"seconds per 1600x1200 picture, {kind}: median {statistics.median(values):.2f}")


if __name__ == "__main__":
    main()
