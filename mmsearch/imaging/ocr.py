"""Text in the picture (OCR): RapidOCR's PP-OCRv4 models on ONNX Runtime, shipped inside the
``rapidocr-onnxruntime`` wheel, so it works offline (``pip install 'mmsearch[ocr]'``).

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

OCR_SIDE = 960  # longest side the detector sees: 12-pixel text at 4000 px stays legible
MIN_SCORE = 0.6  # recognition confidence below which a line is noise
MAX_LINES = 200
INSTALL_HINT = "install it with `pip install 'mmsearch[ocr]'` (RapidOCR, models included)"


@dataclass(frozen=True)
class TextLine:
    text: str
    box: tuple[float, float, float, float]  # left, top, right, bottom as fractions of the picture
    score: float


def ocr_available() -> bool:
    try:
        return importlib.util.find_spec("rapidocr_onnxruntime") is not None
    except ValueError:  # imported as None: made unavailable on purpose
        return False


@functools.cache
def _engine():
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR(
        det_limit_side_len=OCR_SIDE,
        det_limit_type="max",
        intra_op_num_threads=1,
        inter_op_num_threads=1,
    )


def read_lines(picture: Image.Image) -> list[TextLine]:
    """The lines of text in an RGB picture, top to bottom.

    Raises:
        ImportError: the OCR engine is not installed (see :func:`ocr_available`).
    """
    scale = min(1.0, OCR_SIDE / max(picture.size))
    if scale < 1:
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    found, _ = _engine()(np.asarray(picture), use_cls=False)
    lines = []
    for corners, text, score in found or []:
        text = " ".join(str(text).split())
        if not text or float(score) < MIN_SCORE:
            continue
        xs, ys = [p[0] for p in corners], [p[1] for p in corners]
        box = (min(xs) / picture.width, min(ys) / picture.height,
               max(xs) / picture.width, max(ys) / picture.height)  # fmt: skip
        lines.append(TextLine(text, tuple(round(v, 4) for v in box), round(float(score), 3)))
    lines.sort(key=lambda line: (line.box[1], line.box[0]))
    return lines[:MAX_LINES]
