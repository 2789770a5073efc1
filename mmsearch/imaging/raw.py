"""Camera RAW files (DNG, CR2, CR3, NEF, ARW, ORF, RW2, RAF, ...), read through LibRaw (rawpy).

A RAW file holds what the sensor recorded through its colour filter, which must be demosaiced
into a picture. Cameras also embed a JPEG preview of the photo as they rendered it, usually at
full or near-full size. For the model, which needs a few hundred pixels, that preview is decoded
in JPEG draft mode, as cheap as any JPEG. The sensor data is demosaiced only when the file has no
preview that large, and then at half size (each 2x2 block of the colour filter becomes one pixel,
no interpolation) whenever half is enough.

rawpy is imported on first use, so decoder workers that never meet a RAW file do not load it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from mmsearch.errors import ImageError
from mmsearch.imaging.exif import Shot, exif_taken_at, shot_details

# The RAW formats of current and recent cameras that LibRaw reads.
RAW_EXTENSIONS = frozenset(
    {
        ".3fr",  # Hasselblad
        ".arw", ".sr2", ".srf",  # Sony
        ".cr2", ".cr3", ".crw",  # Canon
        ".dng",  # Adobe's open format: Leica, Pentax, Ricoh, phones, converted files
        ".erf",  # Epson
        ".fff",  # Hasselblad/Imacon
        ".iiq",  # Phase One
        ".kdc", ".dcr",  # Kodak
        ".mos",  # Leaf
        ".mrw",  # Minolta
        ".nef", ".nrw",  # Nikon
        ".orf",  # Olympus / OM System
        ".pef",  # Pentax
        ".raf",  # Fujifilm
        ".rw2", ".rwl",  # Panasonic, Leica
        ".srw",  # Samsung
    }
)  # fmt: skip

FORMAT = "RAW"  # the format name a RAW file is stored and filtered under (`--type raw`)

# LibRaw's flip code → the turn that makes its preview upright (LibRaw turns its own output).
_FLIP = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}


@dataclass(frozen=True)
class RawPhoto:
    image: Image.Image  # RGB, upright; shorter side at least min_size when that was asked
    width: int  # of the upright photo at full size
    height: int
    taken_at: str | None  # ISO 8601 local time, when the camera recorded one
    shot: Shot = Shot()


def open_raw(path: Path, *, min_size: int | None, max_pixels: int) -> RawPhoto:
    """Decode a camera RAW file to an upright RGB picture (see the module's description).

    Raises:
        ImageError: with a reason code, as :func:`mmsearch.imaging.pictures.open_picture` does.
        OSError: the file cannot be read (the caller says why).
    """
    try:
        import rawpy
    except ImportError as exc:
        raise ImageError(
            f"{path}: reading camera RAW files needs the rawpy package: pip install rawpy, "
            "then index again",
            reason="needs-decoder",
        ) from exc
    with open(path, "rb") as file:  # OSError here says precisely what is wrong with the file
        if not file.read(1):
            raise ImageError(f"{path}: empty file (0 bytes)", reason="empty")
    try:
        # By name, not from memory: LibRaw then reads only what it needs, and what it prints of a
        # damaged file names the file.
        with rawpy.imread(str(path)) as raw, warnings.catch_warnings():
            # Our own limit is checked against the sensor's size; the preview and header that
            # Pillow opens are no larger, so its bomb warning has nothing to add.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return _decode(raw, path, min_size, max_pixels)
    except rawpy.LibRawFileUnsupportedError as exc:
        # Retried by every run, like a missing decoder: upgrading rawpy may make it readable.
        raise ImageError(
            f"{path}: not a camera RAW file this LibRaw can read (a damaged file, or a camera "
            f"newer than LibRaw {'.'.join(map(str, rawpy.libraw_version))}: pip install -U "
            "rawpy, then index again)",
            reason="needs-decoder",
        ) from exc
    except rawpy.LibRawTooBigError as exc:
        raise ImageError(f"{path}: too large for LibRaw to decode", reason="too-large") from exc
    except (rawpy.LibRawError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(
            f"{path}: corrupt or truncated RAW data ({_message(exc)})", reason="corrupt"
        ) from exc


def _decode(raw, path: Path, min_size: int | None, max_pixels: int) -> RawPhoto:
    sizes = raw.sizes
    width, height = sizes.width, sizes.height
    if width * height > max_pixels:
        raise ImageError(
            f"{path}: {width}x{height} is {width * height / 1e6:.0f} megapixels, over the limit "
            f"of {max_pixels / 1e6:.0f} (a decompression-bomb guard); raise the limit "
            "(--max-megapixels) to index it",
            reason="too-large",
        )
    if sizes.flip in (5, 6):
        width, height = height, width
    image = _preview(raw, min_size) if min_size else None
    if image is None:
        half = bool(min_size) and min(width, height) // 2 >= min_size
        pixels = raw.postprocess(half_size=half, use_camera_wb=True, output_bps=8)
        image = Image.fromarray(pixels)  # LibRaw has turned it upright
    return RawPhoto(image, width, height, _taken_at(raw, path), raw_shot(raw, path))


def _taken_at(raw, path: Path) -> str | None:
    """When the photo was taken, without decoding the sensor data where that can be helped."""

    try:
        # Most RAW formats (DNG, NEF, CR2, ARW, PEF, ...) are TIFF files: Pillow reads their EXIF
        # from the header, where rawpy would decode all the sensor data to tell the date.
        with Image.open(path) as tiff:
            taken_at = exif_taken_at(tiff.getexif())
        if taken_at:
            return taken_at
    except (OSError, SyntaxError, ValueError, KeyError, TypeError, Image.DecompressionBombError):
        pass  # not a TIFF (CR3, RAF, ORF, RW2, ...), or Pillow cannot read its header
    taken = raw.other.timestamp  # LibRaw's reading of the camera's local time; 0 (1970) if none
    return taken.strftime("%Y-%m-%dT%H:%M:%S") if taken.year > 1970 else None


def raw_header_shot(path: Path) -> Shot:
    """The camera settings of a RAW file, without decoding its sensor data."""
    import rawpy

    try:
        with rawpy.imread(str(path)) as raw:
            return raw_shot(raw, path)
    except (rawpy.LibRawError, OSError, ValueError):
        return Shot()


def raw_shot(raw, path: Path) -> Shot:
    """The camera and exposure: from the EXIF of TIFF-based RAW files (Pillow reads their
    header), else what LibRaw read of the exposure (CR3, RAF, ORF: no make or lens there)."""
    try:
        with Image.open(path) as tiff:
            found = shot_details(tiff.getexif())
        if found.camera_model:
            return found
    except (OSError, SyntaxError, ValueError, KeyError, TypeError, Image.DecompressionBombError):
        pass
    try:
        other = raw.other  # rawpy's view of LibRaw's imgother
        numbers = {
            "aperture": other.aperture,
            "exposure_s": other.shutter_speed,
            "focal_mm": other.focal_length,
        }
        iso = other.iso_speed
    except (AttributeError, ValueError):
        return Shot()
    kept = {k: round(float(v), 6) for k, v in numbers.items() if v and v > 0}
    return Shot(iso=int(iso) if iso and iso > 0 else None, **kept)


def _preview(raw, min_size: int) -> Image.Image | None:
    """The camera's embedded preview, upright, when its shorter side is at least ``min_size``."""
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except rawpy.LibRawError:
        return None  # no preview, or a damaged one: the sensor data remains
    try:
        if thumb.format == rawpy.ThumbFormat.JPEG:
            image = Image.open(io.BytesIO(thumb.data))
            image.draft("RGB", (min_size, min_size))  # never below min_size, nor above full size
        else:
            image = Image.fromarray(thumb.data)
        if min(image.size) < min_size:
            return None
        image = image.convert("RGB")
    except (OSError, SyntaxError, ValueError):
        return None  # a damaged preview: the sensor data may still be fine
    # The preview's own EXIF orientation, where it has one, is ignored: LibRaw's flip is the
    # file's, and applying both would turn a portrait twice.
    turn = _FLIP.get(raw.sizes.flip)
    return image.transpose(turn) if turn is not None else image


def _message(exc: BaseException) -> str:
    text = exc.args[0] if exc.args else exc
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)
