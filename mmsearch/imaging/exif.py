"""What a picture's EXIF says of when it was taken."""

from __future__ import annotations

import re

from PIL import Image

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
