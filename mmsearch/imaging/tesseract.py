"""Japanese text in the picture: Tesseract 5 with its Japanese data, from the system's packages.

RapidOCR's PP-OCRv4 recogniser (:mod:`.ocr`) reads Chinese and Latin text; its alphabet has 5 of
Japanese's 170 kana, so Japanese signs, receipts and slides come out as fragments. Tesseract's
``jpn`` model reads kanji and kana (with ``eng`` for the Latin words among them) and installs
offline from Debian (``tesseract-ocr tesseract-ocr-jpn``) or Homebrew.

Tesseract's own page layout is lost on a photo (a sign on a wall, a slide on a screen), so it
does not look for the text: RapidOCR's detector, which finds lines of any script, gives the
lines' boxes, and Tesseract reads only those. Each line is cut out, scaled to
:data:`LINE_HEIGHT` pixels (Tesseract reads small glyphs badly) and the lines are stacked on one
white strip, so one Tesseract process (one thread; the decoder workers already use every core)
reads a picture's lines in one pass. Its TSV output gives each word with its confidence, and a
word belongs to the line of the strip it lies in. Japanese is written without spaces, so two
neighbouring words are joined by one only where neither is CJK ("Total 3,200 yen", "十二%増").
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess

from PIL import Image

INSTALL_HINT = (
    "Japanese OCR needs the ocr extra (`pip install 'mmsearch[ocr]'`, whose detector finds the "
    "lines) and Tesseract with its Japanese data: `sudo apt install tesseract-ocr "
    "tesseract-ocr-jpn` (Debian, Ubuntu) or `brew install tesseract tesseract-lang`"
)
_TIMEOUT_S = 120  # a picture Tesseract cannot finish is left without text, not a hung run


@functools.cache
def installed_languages() -> frozenset[str]:
    """The language data Tesseract has here (empty when the program is not installed)."""
    program = shutil.which("tesseract")
    if program is None:
        return frozenset()
    try:
        listed = subprocess.run(
            [program, "--list-langs"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(line.strip() for line in listed.stdout.splitlines()[1:] if line.strip())


def available(languages: str) -> bool:
    """Whether Tesseract can read ``languages`` ("jpn+eng")."""
    return set(languages.split("+")) <= installed_languages()


LINE_HEIGHT = 48  # pixels a line is scaled to for Tesseract
_GAP = 24  # white pixels between stacked lines, and around them


def read_boxes(picture: Image.Image, boxes: list[tuple], languages: str) -> list[tuple]:
    """(text, box, confidence 0-1) of each box (left, top, right, bottom in pixels) of an RGB
    picture that holds a line Tesseract can read, in the boxes' order.

    Raises:
        RuntimeError: Tesseract failed on the picture.
    """
    if not boxes:
        return []
    crops = []
    for left, top, right, bottom in boxes:
        crop = picture.crop((int(left), int(top), int(right) + 1, int(bottom) + 1))
        scale = LINE_HEIGHT / max(crop.height, 1)
        crops.append(crop.resize((max(1, round(crop.width * scale)), LINE_HEIGHT)))
    strip = Image.new("RGB", (max(c.width for c in crops) + 2 * _GAP,
                              len(crops) * (LINE_HEIGHT + _GAP) + _GAP), "white")  # fmt: skip
    for n, crop in enumerate(crops):
        strip.paste(crop, (_GAP, _GAP + n * (LINE_HEIGHT + _GAP)))
    words: dict[int, list[tuple[str, float]]] = {}
    for text, top, height, confidence in _words(_tesseract(strip, languages)):
        line = int((top + height / 2 - _GAP / 2) // (LINE_HEIGHT + _GAP))
        if 0 <= line < len(crops):
            words.setdefault(line, []).append((text, confidence))
    found = []
    for line, said in sorted(words.items()):
        text = said[0][0]
        for (before, _), (word, _) in zip(said, said[1:], strict=False):
            text += word if _cjk(before[-1]) or _cjk(word[0]) else " " + word
        found.append((text, boxes[line], sum(c for _, c in said) / len(said) / 100))
    return found


def _tesseract(strip: Image.Image, languages: str) -> str:
    png = io.BytesIO()
    strip.save(png, format="PNG")
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        done = subprocess.run(
            ["tesseract", "stdin", "stdout", "-l", languages, "--psm", "6", "tsv"],
            input=png.getvalue(), capture_output=True, timeout=_TIMEOUT_S, env=env,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"Tesseract took over {_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode(errors="replace").strip()[-300:] or "failed")
    return done.stdout.decode("utf-8", errors="replace")


def _words(tsv: str):
    """(text, top, height, confidence 0-100) of each word in Tesseract's TSV, in its order."""
    for row in tsv.splitlines()[1:]:
        fields = row.split("\t")
        if len(fields) == 12 and fields[0] == "5" and fields[11].strip():  # level 5: a word
            yield fields[11].strip(), int(fields[7]), int(fields[9]), float(fields[10])


def _cjk(char: str) -> bool:
    """Kanji, kana, CJK punctuation and full-width forms: written without spaces between."""
    code = ord(char)
    return (
        0x3000 <= code <= 0x30FF  # CJK punctuation, hiragana, katakana
        or 0x3400 <= code <= 0x9FFF  # kanji (CJK unified ideographs and extension A)
        or 0xF900 <= code <= 0xFAFF  # compatibility ideographs
        or 0xFF00 <= code <= 0xFFEF  # full-width and half-width forms
    )
