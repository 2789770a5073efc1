"""Text in the picture (OCR): RapidOCR's PP-OCRv4 models on ONNX Runtime, shipped inside the
``rapidocr-onnxruntime`` wheel, so it works offline (``pip install 'mmsearch[ocr]'``); it reads
Latin and Chinese text. Japanese (``language="ja"``) is read by Tesseract (:mod:`.tesseract`).

The detector finds text regions first and only those are recognised, so a photo without text
costs one detection pass. Pictures are read at most :data:`OCR_SIDE` pixels on their longer
side, one thread per decoder worker (the workers already use every core). Each line keeps its
text and its box, as fractions of the picture's width and height; lines the recogniser is not
sure of are dropped, and a picture full of text keeps its first :data:`MAX_LINES` lines.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass

import numpy as np
from PIL import Image

from mmsearch.imaging import tesseract

OCR_SIDE = 960  # longest side the detector sees: 12-pixel text at 4000 px stays legible
MIN_SCORE = 0.6  # recognition confidence below which a line is noise
MAX_LINES = 200
INSTALL_HINT = "install it with `pip install 'mmsearch[ocr]'` (RapidOCR, models included)"
# OCR languages: None reads Latin and Chinese (RapidOCR); the others name Tesseract's data.
LANGUAGES = {None: "Latin and Chinese, by RapidOCR", "ja": "Japanese and English, by Tesseract"}
_TESSERACT_DATA = {"ja": "jpn+eng"}


@dataclass(frozen=True)
class TextLine:
    text: str
    box: tuple[float, float, float, float]  # left, top, right, bottom as fractions of the picture
    score: float


def ocr_available(language: str | None = None) -> bool:
    # Tesseract reads the lines RapidOCR's detector finds: a language needs both.
    if language is not None and not tesseract.available(_TESSERACT_DATA[language]):
        return False
    try:
        return importlib.util.find_spec("rapidocr_onnxruntime") is not None
    except ValueError:  # imported as None: made unavailable on purpose
        return False


def install_hint(language: str | None = None) -> str:
    return INSTALL_HINT if language is None else tesseract.INSTALL_HINT


@functools.cache
def _engine():
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR(
        det_limit_side_len=OCR_SIDE,
        det_limit_type="max",
        intra_op_num_threads=1,
        inter_op_num_threads=1,
    )


def _box(corners) -> tuple[float, float, float, float]:
    xs, ys = [p[0] for p in corners], [p[1] for p in corners]
    return min(xs), min(ys), max(xs), max(ys)


def read_lines(picture: Image.Image, language: str | None = None) -> list[TextLine]:
    """The lines of text in an RGB picture, top to bottom, in ``language`` (see
    :data:`LANGUAGES`).

    Raises:
        ImportError: the OCR engine is not installed (see :func:`ocr_available`).
    """
    scale = min(1.0, OCR_SIDE / max(picture.size))
    if scale < 1:
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    pixels = np.asarray(picture)
    if language is None:
        found = [
            (text, _box(corners), float(score))
            for corners, text, score in _engine()(pixels, use_cls=False)[0] or []
        ]
    else:  # RapidOCR finds the lines, Tesseract reads them (see .tesseract)
        if not ocr_available(language):
            raise ImportError(tesseract.INSTALL_HINT)
        corners = _engine()(pixels, use_cls=False, use_rec=False)[0] or []
        boxes = sorted((_box(c) for c in corners), key=lambda box: (box[1], box[0]))
        found = tesseract.read_boxes(picture, boxes, _TESSERACT_DATA[language])
    lines = []
    for text, (left, top, right, bottom), score in found:
        text = " ".join(str(text).split())
        if not text or score < MIN_SCORE:
            continue
        box = (left / picture.width, top / picture.height,
               right / picture.width, bottom / picture.height)  # fmt: skip
        lines.append(TextLine(text, tuple(round(v, 4) for v in box), round(score, 3)))
    lines.sort(key=lambda line: (line.box[1], line.box[0]))
    return lines[:MAX_LINES]
