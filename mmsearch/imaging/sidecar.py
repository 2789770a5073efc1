"""XMP sidecars: the file beside a RAW photo (``IMG_1234.CR3.xmp`` as darktable names it, or
``IMG_1234.xmp`` as Lightroom does) where photo tools keep what a user adds: keywords, a
title, a description, a rating, a GPS position from geotagging.

The sidecar's words follow the picture's own (``embedded_text``), and its rating and geotag
replace the picture's. Parsed with defusedxml (no entity tricks); a sidecar that cannot be
read is left out, with why, and the photo indexed without it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace

from mmsearch.imaging.embedded_text import MAX_CHARS
from mmsearch.imaging.exif import Shot
from mmsearch.places import checked_position

_WORD_KEYS = {"title", "description", "subject", "hierarchicalSubject", "Headline", "Label"}
MAX_SIDECAR_BYTES = 4 * 2**20  # a sidecar is a few kilobytes; more is not one


@dataclass(frozen=True)
class XmpFields:
    """What an XMP packet says; None where it does not."""

    words: tuple[str, ...] = ()
    rating: int | None = None  # 0 to 5 stars; -1 is "rejected" (Lightroom, darktable)
    latitude: float | None = None
    longitude: float | None = None


def sidecar_names(name: str) -> tuple[str, ...]:
    """The names an image file's XMP sidecar may have, in the order they are looked for:
    ``name.ext.xmp`` first (darktable, digiKam), then ``name.xmp`` (Lightroom, Capture One),
    either case."""
    stem = os.path.splitext(name)[0]
    return (f"{name}.xmp", f"{name}.XMP", f"{stem}.xmp", f"{stem}.XMP")


def sidecar_of(path: str) -> str | None:
    """The XMP sidecar of an image file, if it has one."""
    return next((c for c in sidecar_names(path) if os.path.isfile(c)), None)


def with_sidecar(
    path: str, text: str, shot: Shot, problems: list[str]
) -> tuple[str, Shot, int | None]:
    """A picture's metadata words and shot with its sidecar's added (its words after the
    picture's own, its rating and GPS position in place of the picture's: a tool writes its
    edits to the sidecar, not into the RAW file), and the sidecar's modification time, taken
    before it is read (a change while reading is read next time); None without a sidecar."""
    sidecar = sidecar_of(path)
    try:
        mtime_ns = os.stat(sidecar).st_mtime_ns if sidecar else None
    except OSError:
        mtime_ns = None
    if mtime_ns is None:
        return text, shot, None
    fields = read_sidecar(sidecar, problems)
    words = "\n".join(dict.fromkeys([*text.splitlines(), *fields.words]))[:MAX_CHARS]
    changes = {"rating": fields.rating} if fields.rating is not None else {}
    if fields.latitude is not None:
        changes |= {"latitude": fields.latitude, "longitude": fields.longitude}
    return words, replace(shot, **changes), mtime_ns


def read_sidecar(path: str, problems: list[str] | None = None) -> XmpFields:
    """The fields of the sidecar file at ``path``; empty, with why added to ``problems``, when
    it cannot be read."""
    try:
        if os.path.getsize(path) > MAX_SIDECAR_BYTES:
            raise ValueError(f"{os.path.getsize(path)} bytes is too large for a sidecar")
        with open(path, "rb") as handle:
            return xmp_fields(handle.read(), problems)
    except Exception as exc:  # noqa: BLE001 - a sidecar never costs the photo its place
        if problems is not None:
            problems.append(f"sidecar {os.path.basename(path)} skipped ({exc})"[:200])
        return XmpFields()


def xmp_fields(packet: bytes | str, problems: list[str] | None = None) -> XmpFields:
    """Words, rating and GPS position of an XMP packet. Raises on XML that cannot be parsed."""
    from defusedxml import ElementTree

    root = ElementTree.fromstring(packet)
    values: dict[str, list[str]] = {}
    for element in root.iter():
        for name, value in element.attrib.items():
            values.setdefault(_local(name), []).append(value)
        key = _local(element.tag)
        texts = [t.strip() for t in element.itertext() if t.strip()]
        if key in _WORD_KEYS and texts:
            values.setdefault(key, []).extend(texts)
        elif element.text and element.text.strip() and not len(element):
            values.setdefault(key, []).append(element.text.strip())
    words = [w for key in _WORD_KEYS for v in values.get(key, []) for w in v.split("|")]
    latitude, longitude = _position(values, problems)
    return XmpFields(
        tuple(dict.fromkeys(w.strip() for w in words if w.strip())),
        _rating(values.get("Rating"), problems),
        latitude,
        longitude,
    )


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def _rating(found: list[str] | None, problems) -> int | None:
    if not found:
        return None
    try:
        rating = round(float(found[0]))
        if not -1 <= rating <= 5:
            raise ValueError(f"{found[0]} is not a rating from -1 to 5")
        return rating
    except ValueError as exc:
        if problems is not None:
            problems.append(f"rating skipped ({exc})"[:200])
        return None


# XMP writes GPS as "DDD,MM,SSk" or "DDD,MM.mmk", k one of N S E W (the XMP exif schema)
_COORDINATE = re.compile(r"^\s*(\d+(?:\.\d+)?),(\d+(?:\.\d+)?)(?:,(\d+(?:\.\d+)?))?([NSEW])\s*$")


def _position(values: dict, problems) -> tuple[float | None, float | None]:
    latitude, longitude = values.get("GPSLatitude"), values.get("GPSLongitude")
    if not latitude or not longitude:
        return None, None
    try:
        return checked_position(_coordinate(latitude[0]), _coordinate(longitude[0]))
    except ValueError as exc:
        if problems is not None:
            problems.append(f"GPS position skipped ({exc})"[:200])
        return None, None


def _coordinate(text: str) -> float:
    match = _COORDINATE.match(text.upper())
    if not match:
        raise ValueError(f"{text!r} is not an XMP coordinate (such as 38,42.834N)")
    degrees = float(match[1]) + float(match[2]) / 60 + float(match[3] or 0) / 3600
    return -degrees if match[4] in "SW" else degrees
