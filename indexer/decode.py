"""Decoding image files into model-ready pixels, in worker processes ahead of the encoder.

This module must stay light (Pillow and numpy only): it is what each worker process imports.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import numpy as np

from mmsearch.errors import ImageError
from mmsearch.imaging.exif import Shot
from mmsearch.imaging.fingerprint import CONTENT_HASH, KnownContent, content_hash
from mmsearch.imaging.ocr import OCR_SIDE, install_hint, read_lines
from mmsearch.imaging.pictures import open_picture, read_header_metadata
from mmsearch.imaging.preprocess import PreprocessConfig, fit_to_model
from mmsearch.imaging.sidecar import with_sidecar
from mmsearch.imaging.video import is_video_path, sample_video, video_metadata
from mmsearch.records import Words


@dataclass(frozen=True)
class Decoded:
    path: str
    # HxWx3 uint8 fitted to the model (a video: N x H x W x 3, its moments); None when decoding
    # failed
    pixels: np.ndarray | None
    width: int = 0
    height: int = 0
    format: str | None = None
    reason: str | None = None  # ImageError.reason when decoding failed
    message: str | None = None
    content_hash: str | None = None
    taken_at: str | None = None  # EXIF DateTimeOriginal, ISO 8601
    text: str = ""  # embedded metadata words (XMP, IPTC, EXIF descriptions)
    shot: Shot = Shot()
    sidecar_mtime_ns: int | None = None  # of the XMP sidecar read with it
    problems: tuple[str, ...] = ()  # metadata fields left out, and why
    ocr: Words | None = None  # text in the picture, when OCR was asked for and could run
    ocr_error: str | None = None  # why OCR could not run on it (the picture is indexed anyway)
    known: bool = False  # not decoded: the library already holds an embedding of this content
    duration_s: float | None = None  # a video: its length
    moment_times: tuple[float, ...] = ()  # a video: when each of its moments (pixels) is
    # Encoded already, where decoding ran beside an encoder (indexer.ray_engine): one row a
    # picture, one a moment of a video; its pixels are then dropped.
    vectors: np.ndarray | None = None

    @property
    def is_video(self) -> bool:
        return self.duration_s is not None


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
    ocr: bool | str = False,
) -> Decoded:
    """Hash and decode one file for the model; failures come back as values, never as exceptions.
    ``ocr``: read the text in the picture too (True), or in a language of
    :data:`~mmsearch.imaging.ocr.LANGUAGES` ("ja").

    A file is hashed only when its size says it could be a copy (KnownContent.worth_hashing);
    one whose content the library probably holds is not decoded (``known`` is set).
    """
    digest = None
    try:
        if _known_content.worth_hashing(os.path.getsize(path)):
            digest = content_hash(path, hash_algorithm)
    except OSError:
        pass  # open_picture below says precisely what is wrong with the file
    if use_known and digest in _known_content:
        return Decoded(path, None, content_hash=digest, known=True)
    if is_video_path(path):
        return _decode_video(path, cfg, digest)
    try:
        # OCR reads text at up to OCR_SIDE pixels: decode that much more, only then.
        min_size = max(cfg.size, OCR_SIDE // 2) if ocr else cfg.size
        picture = open_picture(path, min_size=min_size, max_pixels=max_pixels)
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
    words, error = read_words(picture.image, ocr) if ocr else (None, None)
    problems = list(picture.problems)
    text, shot, sidecar_mtime_ns = with_sidecar(path, picture.text, picture.shot, problems)
    return Decoded(
        path,
        pixels,
        picture.width,
        picture.height,
        picture.format,
        content_hash=digest,
        taken_at=picture.taken_at,
        text=text,
        shot=shot,
        sidecar_mtime_ns=sidecar_mtime_ns,
        problems=tuple(problems),
        ocr=words,
        ocr_error=error,
    )


def _decode_video(path: str, cfg: PreprocessConfig, digest: str | None) -> Decoded:
    """A video's moments fitted to the model, with what its container says (no OCR: the text
    in a video is left to a later version)."""
    try:
        video = sample_video(path, cfg.size)
    except ImageError as exc:
        return Decoded(path, None, reason=exc.reason, message=str(exc), content_hash=digest)
    except MemoryError:
        message = f"{path}: out of memory decoding"
        return Decoded(path, None, reason="too-large", message=message, content_hash=digest)
    problems = list(video.problems)
    text, shot, sidecar_mtime_ns = with_sidecar(path, video.text, _placed(video.position), problems)
    return Decoded(
        path,
        np.stack([fit_to_model(m.image, cfg) for m in video.moments]),
        video.width,
        video.height,
        video.format,
        content_hash=digest,
        taken_at=video.taken_at,
        text=text,
        shot=shot,
        sidecar_mtime_ns=sidecar_mtime_ns,
        problems=tuple(problems),
        duration_s=video.duration_s,
        moment_times=tuple(m.t for m in video.moments),
    )


def _placed(position: tuple[float, float] | None) -> Shot:
    latitude, longitude = position or (None, None)
    return Shot(latitude=latitude, longitude=longitude)


def read_words(image, ocr: bool | str = True) -> tuple[Words | None, str | None]:
    """The picture's OCR lines as Words (empty when it has no text), or why OCR failed."""
    language = None if ocr is True else ocr
    try:
        lines = read_lines(image, language)
    except ImportError:
        return None, f"no OCR engine: {install_hint(language)}"
    except Exception as exc:  # noqa: BLE001 - the engine's own failure: index without OCR
        return None, f"OCR failed ({type(exc).__name__}: {exc})"
    text = "\n".join(line.text for line in lines)
    return Words("ocr", text, tuple(line.box for line in lines)), None


def hash_for(path: str, algorithm: str) -> Decoded:
    """The content hash alone, of a stored image hashed only when a file of its size came."""
    try:
        return Decoded(path, None, content_hash=content_hash(path, algorithm))
    except OSError as exc:
        return Decoded(path, None, reason="unreadable", message=str(exc))


def metadata_for(path: str, max_pixels: int) -> Decoded:
    """Embedded metadata alone (words and shot, with the XMP sidecar's), for an image stored
    before they were kept, or whose sidecar changed."""
    problems: list[str] = []
    if is_video_path(path):
        try:
            own_text, position = video_metadata(path)
        except ImageError as exc:
            return Decoded(path, None, reason=exc.reason, message=str(exc))
        own_shot = _placed(position)
    else:
        header = read_header_metadata(path)
        problems += header.problems
        own_text, own_shot = header.text, header.shot
    text, shot, sidecar_mtime_ns = with_sidecar(path, own_text, own_shot, problems)
    return Decoded(path, None, text=text, shot=shot, sidecar_mtime_ns=sidecar_mtime_ns,
                   problems=tuple(problems))  # fmt: skip


def ocr_for(path: str, max_pixels: int, ocr: bool | str = True) -> Decoded:
    """OCR alone, for an image already stored without it (``index --ocr`` on an older run)."""
    try:
        picture = open_picture(path, min_size=OCR_SIDE // 2, max_pixels=max_pixels)
    except ImageError as exc:
        return Decoded(path, None, reason=exc.reason, message=str(exc))
    words, error = read_words(picture.image, ocr)
    return Decoded(path, None, ocr=words, ocr_error=error)
