"""Camera RAW files for tests: a real drawing saved as a DNG the way a camera saves a photo.

The sensor data is the drawing mosaicked through an RGGB colour filter, in linear light at 12
bits, so LibRaw demosaics it back into the drawing. Like a camera's file, it can carry a JPEG
preview (in IFD0, the sensor data in a sub-IFD, as the DNG specification lays them out), an
orientation and a date. PiDNG (a dev dependency) writes the TIFF structure.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mmsearch.imaging.pictures import open_picture
from tests.helpers.phone_photos import DRAWING, TAKEN_AT

_BLACK, _WHITE = 256, 4095
# XYZ → camera RGB for a camera whose filters are sRGB's primaries: the inverse of sRGB → XYZ.
_XYZ_TO_CAMERA = np.linalg.inv(
    [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]
)


def drawing(scale: int = 4) -> Image.Image:
    """DRAWING upright in RGB, enlarged so that a preview can be smaller than the sensor."""
    picture = open_picture(DRAWING).image
    return picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.LANCZOS)


def save_camera_raw(
    path: Path,
    picture: Image.Image,
    *,
    orientation: int = 1,
    taken_at: str | None = TAKEN_AT,
    preview_size: int | None = None,
) -> Path:
    """Write ``picture`` as the sensor data of a DNG at ``path``.

    Args:
        orientation: the TIFF orientation a camera records (6: display turned 90° clockwise).
        taken_at: ISO 8601 local time, written as the file's DateTime; None for none.
        preview_size: when given, a JPEG preview whose longer side is this many pixels.
    """
    sensor = _mosaic(picture)
    height, width = sensor.shape
    tiff = _TiffWriter()
    sensor_tags = {
        254: (_LONG, [0]),  # NewSubfileType: the full-resolution image
        256: (_LONG, [width]),
        257: (_LONG, [height]),
        258: (_SHORT, [16]),  # BitsPerSample
        259: (_SHORT, [1]),  # Compression: none
        262: (_SHORT, [32803]),  # PhotometricInterpretation: colour filter array
        273: (_LONG, [tiff.later(sensor.astype("<u2").tobytes())]),  # StripOffsets
        277: (_SHORT, [1]),  # SamplesPerPixel
        278: (_LONG, [height]),  # RowsPerStrip
        279: (_LONG, [sensor.size * 2]),  # StripByteCounts
        33421: (_SHORT, [2, 2]),  # CFARepeatPatternDim
        33422: (_BYTE, [0, 1, 1, 2]),  # CFAPattern: R G / G B
        50714: (_LONG, [_BLACK]),  # BlackLevel
        50717: (_LONG, [_WHITE]),  # WhiteLevel
    }
    camera_tags = {
        271: (_ASCII, "mmsearch"),  # Make
        272: (_ASCII, "test camera"),  # Model
        274: (_SHORT, [orientation]),
        50706: (_BYTE, [1, 4, 0, 0]),  # DNGVersion
        50707: (_BYTE, [1, 2, 0, 0]),  # DNGBackwardVersion
        50708: (_ASCII, "mmsearch test camera"),  # UniqueCameraModel
        50721: (_SRATIONAL, [(round(v * 10000), 10000) for v in _XYZ_TO_CAMERA.flat]),
        50728: (_RATIONAL, [(1, 1)] * 3),  # AsShotNeutral
        50778: (_SHORT, [21]),  # CalibrationIlluminant1: D65
    }
    if taken_at:
        camera_tags[306] = (_ASCII, taken_at.replace("-", ":").replace("T", " "))  # DateTime
    if not preview_size:
        data = tiff.finish(tiff.ifd(sensor_tags | camera_tags))
    else:
        # As cameras and Adobe's converter lay it out: the preview in IFD0, the sensor in a sub-IFD.
        preview = picture.copy()
        preview.thumbnail((preview_size, preview_size))
        buffer = io.BytesIO()
        preview.save(buffer, "JPEG", quality=90)
        preview_tags = {
            254: (_LONG, [1]),  # NewSubfileType: a reduced-resolution copy
            256: (_LONG, [preview.width]),
            257: (_LONG, [preview.height]),
            258: (_SHORT, [8, 8, 8]),
            259: (_SHORT, [7]),  # JPEG
            262: (_SHORT, [6]),  # YCbCr
            273: (_LONG, [tiff.later(buffer.getvalue())]),
            277: (_SHORT, [3]),
            278: (_LONG, [preview.height]),
            279: (_LONG, [buffer.tell()]),
            330: (_LONG, [tiff.ifd(sensor_tags)]),  # SubIFDs
        }
        data = tiff.finish(tiff.ifd(preview_tags | camera_tags))
    path.write_bytes(data)
    return path


_BYTE, _ASCII, _SHORT, _LONG, _RATIONAL, _SRATIONAL = 1, 2, 3, 4, 5, 10
_PACKING = {_BYTE: "B", _SHORT: "H", _LONG: "I", _RATIONAL: "II", _SRATIONAL: "ii"}


class _TiffWriter:
    """A little-endian TIFF with its IFDs first and the image data after them, as cameras write
    it (so a truncated copy loses pixels, not the header)."""

    def __init__(self):
        self.data = bytearray(b"II*\0\0\0\0\0")
        self._blocks: list[tuple[bytes, list[int]]] = []  # image data and where its offset goes

    def later(self, block: bytes) -> _Later:
        """A value for an offset tag: ``block``'s offset once finish() has placed it."""
        self._blocks.append((block, []))
        return _Later(len(self._blocks) - 1)

    def ifd(self, tags: dict[int, tuple[int, object]]) -> int:
        entries, offsets_to_patch = b"", []
        for tag, (kind, values) in sorted(tags.items()):
            if kind == _ASCII:
                value, count = values.encode("ascii") + b"\0", len(values) + 1
            elif isinstance(values[0], _Later):
                value, count = b"\0\0\0\0", 1
                offsets_to_patch.append((values[0].index, len(entries) + 8))
            else:
                pairs = kind in (_RATIONAL, _SRATIONAL)
                flat = [v for pair in values for v in pair] if pairs else values
                value, count = struct.pack(f"<{len(flat)}{_PACKING[kind][0]}", *flat), len(values)
            if len(value) > 4:
                value = struct.pack("<I", self._put(value))
            entries += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")
        start = self._put(struct.pack("<H", len(tags)) + entries + struct.pack("<I", 0))
        for index, at in offsets_to_patch:
            self._blocks[index][1].append(start + 2 + at)
        return start

    def finish(self, first_ifd: int) -> bytes:
        struct.pack_into("<I", self.data, 4, first_ifd)
        for block, patches in self._blocks:
            offset = self._put(block)
            for at in patches:
                struct.pack_into("<I", self.data, at, offset)
        return bytes(self.data)

    def _put(self, block: bytes) -> int:
        """Append ``block`` at an even offset (as TIFF requires) and return that offset."""
        self.data += b"\0" * (len(self.data) % 2)
        offset = len(self.data)
        self.data += block
        return offset


@dataclass(frozen=True)
class _Later:
    index: int


def _mosaic(picture: Image.Image) -> np.ndarray:
    """The sensor values an RGGB camera would record of ``picture``: linear light, 12 bits."""
    rgb = np.asarray(picture.convert("RGB"), dtype=np.float64) / 255
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    linear = linear[: linear.shape[0] // 2 * 2, : linear.shape[1] // 2 * 2]
    sensor = linear[..., 1].copy()  # green, except where the filter is red or blue
    sensor[0::2, 0::2] = linear[0::2, 0::2, 0]
    sensor[1::2, 1::2] = linear[1::2, 1::2, 2]
    return np.round(_BLACK + sensor * (_WHITE - _BLACK)).astype(np.uint16)
