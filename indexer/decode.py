"""Decoding image files into model-ready pixels, in worker processes ahead of the encoder.

This module must stay light (Pillow and numpy only): it is what each worker process imports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmsearch.errors import ImageError
from mmsearch.imaging import open_picture
from mmsearch.preprocess import PreprocessConfig, fit_to_model


@dataclass(frozen=True)
class Decoded:
    path: str
    pixels: np.ndarray | None  # HxWx3 uint8 fitted to the model; None when decoding failed
    width: int = 0
    height: int = 0
    format: str | None = None
    reason: str | None = None  # ImageError.reason when decoding failed
    message: str | None = None


def decode_for_model(path: str, cfg: PreprocessConfig, max_pixels: int) -> Decoded:
    """Decode one file for the model; failures come back as values, never as exceptions."""
    try:
        picture = open_picture(path, min_size=cfg.size, max_pixels=max_pixels)
        pixels = fit_to_model(picture.image, cfg)
    except ImageError as exc:
        return Decoded(path, None, reason=exc.reason, message=str(exc))
    except MemoryError:
        return Decoded(path, None, reason="too-large", message=f"{path}: out of memory decoding")
    return Decoded(path, pixels, picture.width, picture.height, picture.format)
