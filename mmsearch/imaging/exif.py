"""What a picture's EXIF says of when, and with what, it was taken."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields

from PIL import Image

from mmsearch.places import checked_position

_EXIF_DATETIME = re.compile(r"(\d{4}):(\d\d):(\d\d)[ T](\d\d):(\d\d):(\d\d)")


def exif_taken_at(exif: Image.Exif) -> str | None:
    """When the picture was taken: DateTimeOriginal, else the file's DateTime (ISO 8601)."""
    return _exif_datetime(exif.get_ifd(0x8769).get(0x9003) or exif.get(0x0132))


def _exif_datetime(value) -> str | None:
    """EXIF's "YYYY:MM:DD HH:MM:SS" as ISO 8601 ("YYYY-MM-DDTHH:MM:SS"); None when unusable."""
    if not isinstance(value, str):
        return None
    match = _EXIF_DATETIME.match(value.strip())
    if not match or match[1] == "0000":
        return None  # cameras write zeros when the clock was never set
    return "{}-{}-{}T{}:{}:{}".format(*match.groups())


@dataclass(frozen=True)
class Shot:
    """How and where a picture was taken, from its EXIF (or a RAW file's metadata), and how
    its photographer rated it (XMP); None where the file does not say, or says something
    impossible (a zero denominator, an f/0 lens, a latitude over 90)."""

    camera_make: str | None = None
    camera_model: str | None = None
    lens: str | None = None
    focal_mm: float | None = None
    focal_35mm: float | None = None  # the 35 mm film equivalent
    aperture: float | None = None  # the f-number
    exposure_s: float | None = None
    iso: int | None = None
    latitude: float | None = None  # GPS, decimal degrees (north and east positive)
    longitude: float | None = None
    rating: int | None = None  # the photographer's stars (XMP): 0 to 5, -1 rejected

    def as_columns(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# (IFD, tag, kind, lowest, highest): 0 is IFD0, 0x8769 the Exif IFD.
_CAMERA_TAGS = {
    "camera_make": (0, 0x010F, "text", None, None),
    "camera_model": (0, 0x0110, "text", None, None),
    "lens": (0x8769, 0xA434, "text", None, None),
    "focal_mm": (0x8769, 0x920A, "number", 0.1, 5000),
    "focal_35mm": (0x8769, 0xA405, "number", 1, 10000),
    "aperture": (0x8769, 0x829D, "number", 0.5, 128),
    "exposure_s": (0x8769, 0x829A, "number", 1e-6, 3600),
    "iso": (0x8769, 0x8827, "integer", 1, 10_000_000),
}


def shot_details(exif: Image.Exif, problems: list[str] | None = None) -> Shot:
    """The camera, lens and exposure the EXIF records; a field it cannot read, or whose value
    is impossible, is left None, and why is added to ``problems`` (``index --verbose``)."""
    found = {}
    for name, (ifd, tag, kind, lowest, highest) in _CAMERA_TAGS.items():
        try:
            value = (exif.get_ifd(ifd) if ifd else exif).get(tag)
            found[name] = _value(value, kind, lowest, highest)
        except Exception as exc:  # noqa: BLE001 - a malformed field is skipped, the picture kept
            found[name] = None
            if problems is not None:
                problems.append(f"{name} skipped ({exc})"[:200])
    found["latitude"], found["longitude"] = _gps_position(exif, problems)
    return Shot(**found)


_GPS_IFD = 0x8825


def _gps_position(
    exif: Image.Exif, problems: list[str] | None
) -> tuple[float, float] | tuple[None, None]:
    """(latitude, longitude) from the GPS IFD, or (None, None) when it has none or an impossible
    one; why is added to ``problems``."""
    try:
        gps = exif.get_ifd(_GPS_IFD)
        if not gps.get(2) or not gps.get(4):
            return None, None
        return checked_position(
            _degrees(gps[2], gps.get(1), "S"), _degrees(gps[4], gps.get(3), "W")
        )
    except Exception as exc:  # noqa: BLE001 - a malformed field is skipped, the picture kept
        if problems is not None:
            problems.append(f"GPS position skipped ({exc})"[:200])
        return None, None


def _degrees(value, reference, negative: str) -> float:
    """EXIF's (degrees, minutes, seconds) rationals as signed decimal degrees."""
    parts = [float(v) for v in (value if isinstance(value, tuple | list) else (value,))]
    if not parts or not all(math.isfinite(v) for v in parts):
        raise ValueError(f"{value} is not a coordinate (a zero denominator?)")
    degrees = sum(v / 60**i for i, v in enumerate(parts[:3]))
    if isinstance(reference, bytes):
        reference = reference.decode("ascii", errors="ignore")
    return -degrees if str(reference or "").strip().upper().startswith(negative) else degrees


def _value(value, kind: str, lowest, highest):
    if isinstance(value, tuple | list):
        value = value[0] if value else None
    if value is None:
        return None
    if kind == "text":
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="ignore")
        text = " ".join(str(value).replace("\x00", " ").split())
        return text[:120] or None
    number = float(value)
    if not math.isfinite(number) or not lowest <= number <= highest:
        raise ValueError(f"{value} is not a possible value")
    return int(number) if kind == "integer" else round(number, 6)
