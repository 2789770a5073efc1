"""Decoding image files into model-ready pixels, in worker processes ahead of the encoder.

This module must stay light (Pillow and numpy only): it is what each worker process imports.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

import numpy as np

from mmsearch.errors import ImageError
from mmsearch.imaging.fingerprint import CONTENT_HASH, KnownContent, content_hash
from mmsearch.imaging.pictures import open_picture
from mmsearch.imaging.preprocess import PreprocessConfig, fit_to_model


@dataclass(frozen=True)
class Decoded:
    path: str
    pixels: np.ndarray | None  # HxWx3 uint8 fitted to the model; None when decoding failed
    width: int = 0
    height: int = 0
    format: str | None = None
    reason: str | None = None  # ImageError.reason when decoding failed
    message: str | None = None
    content_hash: str | None = None
    taken_at: str | None = None  # EXIF DateTimeOriginal, ISO 8601
    text: str = ""  # embedded metadata words (XMP, IPTC, EXIF descriptions)
    known: bool = False  # not decoded: the library already holds an embedding of this content


# Content the library already has embeddings for, set once per worker process (see
# share_known_content): a moved, renamed or duplicated file is hashed but never decoded.
_known_content = KnownContent()


def share_known_content(known: KnownContent) -> None:
    global _known_content
    _known_content = known


def start_worker(known: KnownContent) -> None:
    """Set up a decoder worker process. Ctrl-C reaches the whole process group; the parent
    handles it (stores the batch in flight, then stops the workers), so workers ignore it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    share_known_content(known)


def decode_for_model(
    path: str,
    cfg: PreprocessConfig,
    max_pixels: int,
    *,
    hash_algorithm: str = CONTENT_HASH,
    use_known: bool = True,
) -> Decoded:
    """Hash and decode one file for the model; failures come back as values, never as exceptions.

    A file whose content the library probably holds (see KnownContent) is not decoded
    (``known`` is set).
    """
    try:
        digest = content_hash(path, hash_algorithm)
    except OSError:
        digest = None  # open_picture below says precisely what is wrong with the file
    if use_known and digest in _known_content:
        return Decoded(path, None, content_hash=digest, known=True)
    try:
        picture = open_picture(path, min_size=cfg.size, max_pixels=max_pixels)
        pixels = fit_to_model(picture.image, cfg)
    except ImageError as exc:
        return Decoded(path, None, reason=exc.reason, message=str(exc), content_hash=digest)
    except MemoryError:
        return Decoded(
            path,
            None,
            reason="too-large",
            message=f"{path}: out of memory decoding",
            content_hash=digest,
        )
    return Decoded(
        path,
        pixels,
        picture.width,
        picture.height,
        picture.format,
        content_hash=digest,
        taken_at=picture.taken_at,
        text=picture.text,
    )
