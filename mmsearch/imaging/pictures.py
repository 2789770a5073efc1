"""Decode an image file safely into an RGB picture, the way a person sees it.

Everything a photo folder can throw at us is handled here, in one place shared by indexing and
queries: EXIF orientation, transparency (composited on white: clip art and logos are drawn on
white, and black would turn dark line art into a black square), palette, grey, 16-bit and CMYK
modes, animated files (first frame), and decompression bombs, which are refused from the header,
before any pixel is decoded. Camera RAW files go through :mod:`mmsearch.imaging.raw`.

This module imports only Pillow and numpy so that decoder worker processes start fast.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from mmsearch.errors import ImageError
from mmsearch.imaging.embedded_text import embedded_rating, embedded_text
from mmsearch.imaging.exif import Shot, exif_taken_at, shot_details
from mmsearch.imaging.raw import FORMAT as RAW_FORMAT
from mmsearch.imaging.raw import RAW_EXTENSIONS, open_raw, raw_header_shot
from mmsearch.imaging.video import frame_at, is_video_path

_PICTURE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
IMAGE_EXTENSIONS = frozenset(_PICTURE_EXTENSIONS | {".heic", ".heif", ".avif"} | RAW_EXTENSIONS)
_HEIF_EXTENSIONS = frozenset({".heic", ".heif"})

# Pillow's own bomb limit (it raises above twice MAX_IMAGE_PIXELS, ~179 megapixels).
DEFAULT_MAX_PIXELS = 2 * 89_478_485

WHITE = (255, 255, 255)

# Modes Pillow's Image.reduce handles (RGBA and LA premultiplied); others are converted first.
_REDUCIBLE = frozenset({"RGB", "RGBA", "L", "LA"})

# EXIF orientations that turn the picture a quarter: width and height swap.
_QUARTER_TURNS = {5, 6, 7, 8}


@dataclass(frozen=True)
class Picture:
    """A decoded picture and what the file says of itself."""

    image: Image.Image | None  # RGB, upright; maybe reduced (min_size); None: the header alone
    width: int  # of the upright full-size picture
    height: int
    format: str | None
    taken_at: str | None = None  # EXIF DateTimeOriginal as ISO 8601 local time, when present
    text: str = ""  # what photo tools wrote into it (see mmsearch.imaging.embedded_text)
    shot: Shot = Shot()  # camera, lens, exposure and place, where it says
    problems: tuple[str, ...] = ()  # metadata fields left out, and why (index --verbose)


def load_image(
    path: str | os.PathLike[str],
    *,
    min_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Open an image file and return it as an RGB image, upright (see :func:`open_picture`)."""
    return open_picture(path, min_size=min_size, max_pixels=max_pixels).image


def open_picture(
    path: str | os.PathLike[str],
    *,
    min_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Picture:
    """Open an image file and decode it to an upright RGB picture.

    Args:
        path: the image file.
        min_size: when given, the decoder may return a smaller picture whose shorter side is still
            at least this many pixels (JPEG DCT-domain draft mode, ``Image.reduce``); this is what
            makes decoding a 24-megapixel photo for a 224-pixel model cheap.
        max_pixels: images with more pixels than this are refused before decoding.

    Raises:
        ImageError: with a ``reason`` code: ``missing``, ``unreadable``, ``not-an-image``,
            ``too-large``, ``corrupt``, ``needs-decoder`` (a HEIC, AVIF or camera RAW file this
            installation cannot decode; retried by the next run).
    """
    path = Path(path)
    if Image.MAX_IMAGE_PIXELS and max_pixels > 2 * Image.MAX_IMAGE_PIXELS:
        # Pillow refuses at twice its own limit while opening; the caller asked for more.
        Image.MAX_IMAGE_PIXELS = max_pixels // 2 + 1
    try:
        if path.suffix.lower() in RAW_EXTENSIONS:
            raw = open_raw(path, min_size=min_size, max_pixels=max_pixels)
            image = _reduce(raw.image, min_size)
            return Picture(image, raw.width, raw.height, RAW_FORMAT, raw.taken_at, shot=raw.shot)
        with warnings.catch_warnings():
            # Our own limit is checked below, with a message that says how to raise it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = _open_image(path)
    except FileNotFoundError as exc:
        raise ImageError(f"{path}: file not found (moved or deleted?)", reason="missing") from exc
    except (PermissionError, IsADirectoryError) as exc:
        raise ImageError(f"{path}: cannot read file ({exc.strerror})", reason="unreadable") from exc
    except UnidentifiedImageError as exc:
        if os.path.getsize(path) == 0:
            raise ImageError(f"{path}: empty file (0 bytes)", reason="empty") from exc
        _raise_if_decoder_missing(path, exc)
        raise ImageError(
            f"{path}: not a recognised image file "
            "(supported: JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF, AVIF, camera RAW)",
            reason="not-an-image",
        ) from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"{path}: {exc} Raise the limit (--max-megapixels) to index it", reason="too-large"
        ) from exc
    except OSError as exc:
        if exc.errno is not None:  # the operating system's error: the file itself is unreadable
            raise ImageError(f"{path}: cannot read file ({exc})", reason="unreadable") from exc
        if os.path.getsize(path) == 0:
            raise ImageError(f"{path}: empty file (0 bytes)", reason="empty") from exc
        raise ImageError(
            f"{path}: corrupt or truncated image header ({exc})", reason="corrupt"
        ) from exc
    return _picture(path, image, min_size, max_pixels)


def _picture(path: Path, image: Image.Image, min_size: int | None, max_pixels: int) -> Picture:
    """An opened (not yet decoded) image as a Picture: size checked, EXIF read, pixels decoded."""
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(
                f"{path}: {width}x{height} is {width * height / 1e6:.0f} megapixels, over the "
                f"limit of {max_pixels / 1e6:.0f} (a decompression-bomb guard); raise the limit "
                "(--max-megapixels) to index it",
                reason="too-large",
            )
        file_format = image.format
        problems: list[str] = []
        text = embedded_text(image, problems)
        taken_at = None
        shot = Shot()
        try:
            exif = image.getexif()
            if exif.get(0x0112) in _QUARTER_TURNS:
                width, height = height, width
            taken_at = exif_taken_at(exif)
            shot = replace(shot_details(exif, problems), rating=embedded_rating(image))
        except (OSError, SyntaxError, ValueError, KeyError, TypeError):
            pass  # unreadable EXIF: the picture itself may still be fine
        try:
            with warnings.catch_warnings():
                # We checked the size ourselves above, against our own limit.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                picture = _decode(image, min_size)
                return Picture(
                    picture, width, height, file_format, taken_at, text, shot, tuple(problems)
                )
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(
                f"{path}: corrupt or truncated image data ({exc})", reason="corrupt"
            ) from exc


def jpeg_rendering(
    path: str | os.PathLike[str], size: int, *, quality: int, at: float | None = None
) -> bytes:
    """The picture upright as JPEG bytes, at most ``size`` pixels on its longer side: what a
    browser can show of any file we index (thumbnails, HEIC, TIFF and RAW views; a video's
    frame ``at`` seconds in, its first without).

    Raises:
        ImageError: as :func:`open_picture` (a video: :func:`mmsearch.imaging.video.frame_at`).
    """
    if is_video_path(path):
        picture = frame_at(os.fspath(path), at or 0.0, size)
    else:
        picture = load_image(path, min_size=size)
    picture.thumbnail((size, size))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def read_header_metadata(path: str | os.PathLike[str]) -> Picture:
    """The metadata words, camera settings and skipped fields of an image file, from its header
    alone (no pixel is decoded, the Picture's image is None); nothing for a file that cannot
    be opened (indexing says why)."""
    path = Path(path)
    problems: list[str] = []
    try:
        if path.suffix.lower() in RAW_EXTENSIONS:
            return Picture(None, 0, 0, RAW_FORMAT, shot=raw_header_shot(path))
        with _open_image(path) as image:
            text = embedded_text(image, problems)
            shot = shot_details(image.getexif(), problems)
            shot = replace(shot, rating=embedded_rating(image))
        return Picture(None, 0, 0, None, text=text, shot=shot, problems=tuple(problems))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, ImageError):
        return Picture(None, 0, 0, None)


def _open_image(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except UnidentifiedImageError:
        if not _heif_opener():
            raise
        # Registered on first need, so JPEG-only runs never load libheif; HEIC is recognised by
        # its content, so a phone photo renamed .jpg opens too.
        return Image.open(path)


@functools.cache
def _heif_opener() -> bool:
    """Let Pillow open HEIC/HEIF (phone photos) through pi-heif, a decode-only libheif binding
    whose libheif applies the file's rotation itself; False when pi-heif is not installed."""
    try:
        import pi_heif
    except ImportError:
        return False
    pi_heif.register_heif_opener()
    return True


def _raise_if_decoder_missing(path: Path, exc: Exception) -> None:
    """An image Pillow could not identify because a decoder is missing here: say which."""
    suffix = path.suffix.lower()
    if suffix in _HEIF_EXTENSIONS and not _heif_opener():
        raise ImageError(
            f"{path}: reading HEIC/HEIF images needs the pi-heif package: pip install pi-heif, "
            "then index again",
            reason="needs-decoder",
        ) from exc
    if suffix == ".avif" and not features.check("avif"):
        raise ImageError(
            f"{path}: this Pillow cannot read AVIF images: pip install -U pillow, then index again",
            reason="needs-decoder",
        ) from exc


def _decode(image: Image.Image, min_size: int | None) -> Image.Image:
    if min_size and image.format == "JPEG":
        # DCT-domain downscale by 1/2, 1/4 or 1/8 while keeping both sides >= what the model needs.
        # Orientation may swap the sides later, so ask for min_size on both.
        image.draft("RGB", (min_size, min_size))
    image.seek(0)  # animated GIF/WebP/TIFF: the first frame
    image.load()
    # In place: without a rotation to apply, exif_transpose would otherwise return a full copy.
    ImageOps.exif_transpose(image, in_place=True)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    # Reduce before any conversion: a 170-megapixel RGBA drawing then costs its own pixels plus
    # one premultiplied copy (Pillow reduces RGBA and LA premultiplied, so compositing on white
    # afterwards gives the same picture), not three full-size copies.
    return _to_rgb(_reduce(image, min_size))


def _reduce(image: Image.Image, min_size: int | None) -> Image.Image:
    if min_size and image.mode in _REDUCIBLE:
        factor = min(image.size) // (2 * min_size)
        if factor >= 2:
            # Integer box reduction down to no less than twice the target: cheap, and it leaves the
            # final resampling to the model's own resize so the result matches open_clip.
            return image.reduce(factor)
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(image))).convert("RGB")
    if mode == "P" and "transparency" in image.info or mode in ("PA", "LA", "La", "RGBa"):
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        background = Image.new("RGB", image.size, WHITE)
        background.paste(image, mask=image.getchannel("A"))
        return background
    # L, 1, P without transparency, CMYK, YCbCr, LAB, HSV: Pillow converts these faithfully.
    return image.convert("RGB")


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Scale 16-bit or float greyscale to 8 bits by its real range (Pillow would clip at 255)."""
    is_float = pixels.dtype.kind == "f"
    pixels = pixels.astype(np.float64)
    if is_float and pixels.size and pixels.max() <= 1.0 and pixels.min() >= 0.0:
        top = 1.0
    else:
        top = 65535.0 if pixels.max(initial=0) > 255 else 255.0
    return np.clip(pixels / top * 255.0 + 0.5, 0, 255).astype(np.uint8)


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """Whether the file name has an extension mmsearch indexes."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS
