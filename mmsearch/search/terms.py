"""What a user asks of a search: composed terms, filters, and how to trim and order the answer.

A query is a weighted sum of text and image terms on unit embeddings ("beach" + me.jpg −
"people"), normalised again: CLIP's space is close to linear in concepts, so adding and
subtracting directions composes meanings. Filters become SQL on the image metadata, evaluated
inside the vector search itself (PostgreSQL's statement, or FAISS's ID selector: see
mmsearch.search.selection), so a filter that keeps one image in ten thousand still returns k
results instead of the few that survived a top-k.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from sqlalchemy import func, or_

from mmsearch.errors import InputError
from mmsearch.imaging.pictures import is_image_path
from mmsearch.imaging.video import VIDEO_EXTENSIONS
from mmsearch.paths import as_folder
from mmsearch.places import EARTH_RADIUS_KM, bounding_box
from mmsearch.results import ImageHit
from mmsearch.storage.schema import ImageRow

_WEIGHT = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)):(.+)", re.S)
_DATE = re.compile(r"\d{4}(-\d\d(-\d\d)?)?")
ORIENTATIONS = ("landscape", "portrait", "square")


@dataclass(frozen=True)
class QueryTerm:
    """One text or image of a composed query, with its weight (negative subtracts)."""

    weight: float
    text: str | None = None
    image: str | None = None  # an image file

    @classmethod
    def parse(cls, value: str, *, sign: float = 1.0, files: bool = True) -> QueryTerm:
        """``"sunset"``, ``"2:sunset"``, ``"./me.jpg"``, ``"0.5:./me.jpg"``: the one parser of
        query terms, for the command line and the web API alike.

        With ``files`` (the command line), a value that ends in an image extension is an image
        file and must exist; anything else, and everything without ``files`` (the web API, whose
        callers must not name files on the server), is text.
        """
        weight = 1.0
        match = _WEIGHT.fullmatch(value)
        if match:
            weight, value = float(match[1]), match[2]
        if not value.strip():
            raise InputError("a query term is empty; give a text or an image file")
        if files and is_image_path(value):
            if not os.path.isfile(value):
                raise InputError(f"query image {value} does not exist (or is not a file)")
            return cls(sign * weight, image=value)
        return cls(sign * weight, text=value)


@dataclass(frozen=True)
class ImageFilter:
    """Which images a search may return. Dates are ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``; both
    ends are inclusive of the whole period they name (``--to 2024-06`` includes 30 June)."""

    folders: tuple[str, ...] = ()
    date_from: str | None = None
    date_to: str | None = None
    min_width: int | None = None
    min_height: int | None = None
    orientation: str | None = None
    # Pillow format names (JPEG, PNG, ...), RAW, video containers (MP4, MOV...), and the kinds
    # "image" and "video"
    formats: tuple[str, ...] = ()
    # How it was taken (EXIF): camera make or model and lens are matched as substrings, any
    # case (a lens "35mm" matches "XF35mmF1.4 R" and "FE 35 mm F1.8"); focal lengths are the
    # 35 mm equivalent where the file gives one; ranges are (lowest, highest), None open.
    camera: str | None = None
    lens: str | None = None
    focal: tuple[float | None, float | None] | None = None
    aperture: tuple[float | None, float | None] | None = None
    iso: tuple[float | None, float | None] | None = None
    exposure: tuple[float | None, float | None] | None = None  # seconds
    # Where (GPS): within radius_km of a position; a country by its ISO code ("PT"); a place
    # whose town, region or country name is this (any case).
    near: tuple[float, float, float] | None = None  # (latitude, longitude, radius_km)
    country: str | None = None
    place: str | None = None
    min_rating: int | None = None  # at least this many XMP stars

    def __post_init__(self):
        for name in ("date_from", "date_to"):
            value = getattr(self, name)
            if value is not None and not _DATE.fullmatch(value):
                flag = "--from" if name == "date_from" else "--to"
                raise InputError(f"{flag} {value!r} is not a date; use YYYY, YYYY-MM or YYYY-MM-DD")
        if self.orientation is not None and self.orientation not in ORIENTATIONS:
            raise InputError(
                f"orientation {self.orientation!r} is not one of {', '.join(ORIENTATIONS)}"
            )
        if self.country is not None and not re.fullmatch(r"[A-Za-z]{2}", self.country.strip()):
            raise InputError(
                f"--country {self.country!r}: give the two-letter ISO code (PT, JP, US); "
                "--place matches a country's name"
            )
        formats = tuple(_format_name(f) for f in self.formats)
        object.__setattr__(self, "formats", formats)
        object.__setattr__(self, "folders", tuple(os.path.abspath(f) for f in self.folders))

    def __bool__(self) -> bool:
        return self != ImageFilter()

    def conditions(self) -> list:
        """SQLAlchemy conditions on ``ImageRow`` (bound parameters, never formatted SQL)."""
        found = []
        if self.folders:
            found.append(
                or_(
                    *(
                        ImageRow.path.startswith(as_folder(folder), autoescape=True)
                        for folder in self.folders
                    )
                )
            )
        if self.date_from:
            found.append(ImageRow.taken_at >= self.date_from)
        if self.date_to:
            found.append(ImageRow.taken_at <= self.date_to + "\uffff")  # the whole period
        if self.min_width:
            found.append(ImageRow.width >= self.min_width)
        if self.min_height:
            found.append(ImageRow.height >= self.min_height)
        if self.orientation == "landscape":
            found.append(ImageRow.width > ImageRow.height)
        elif self.orientation == "portrait":
            found.append(ImageRow.width < ImageRow.height)
        elif self.orientation == "square":
            found.append(ImageRow.width == ImageRow.height)
        if self.formats:
            named = [f for f in self.formats if f not in _KINDS]
            kinds = [_KINDS[f] for f in self.formats if f in _KINDS]
            found.append(or_(*([ImageRow.format.in_(named)] if named else []), *kinds))
        if self.camera:
            camera = (
                func.coalesce(ImageRow.camera_make, "")
                + " "
                + func.coalesce(ImageRow.camera_model, "")
            )
            found.append(func.lower(camera).contains(self.camera.lower(), autoescape=True))
        if self.lens:
            squeezed = self.lens.lower().replace(" ", "")
            lens = func.replace(func.lower(ImageRow.lens), " ", "")
            found.append(lens.contains(squeezed, autoescape=True))
        focal = func.coalesce(ImageRow.focal_35mm, ImageRow.focal_mm)
        for column, span in ((focal, self.focal), (ImageRow.aperture, self.aperture),
                             (ImageRow.iso, self.iso),
                             (ImageRow.exposure_s, self.exposure)):  # fmt: skip
            if span is not None:
                low, high = span
                found += [column >= low] if low is not None else []
                found += [column <= high] if high is not None else []
        if self.near is not None:
            found += _within(*self.near)
        if self.country:
            found.append(ImageRow.country_code == self.country.strip().upper())
        if self.min_rating is not None:
            found.append(ImageRow.rating >= self.min_rating)
        if self.place:
            name = " ".join(self.place.split()).lower()
            columns = (ImageRow.place_city, ImageRow.place_region, ImageRow.place_country)
            found.append(or_(*(func.lower(c) == name for c in columns)))
        return found

    def describe(self) -> str:
        parts = [f"in {f}" for f in self.folders]
        if self.date_from or self.date_to:
            parts.append(f"taken {self.date_from or '…'} to {self.date_to or '…'}")
        if self.min_width or self.min_height:
            parts.append(f"at least {self.min_width or 0}x{self.min_height or 0} pixels")
        if self.orientation:
            parts.append(self.orientation)
        if self.formats:
            parts.append("type " + "/".join(self.formats))
        if self.camera:
            parts.append(f"camera {self.camera!r}")
        if self.lens:
            parts.append(f"lens {self.lens!r}")
        for name, span in (("focal", self.focal), ("aperture", self.aperture), ("iso", self.iso),
                           ("exposure", self.exposure)):  # fmt: skip
            if span is not None:
                parts.append(f"{name} {_span(span)}")
        if self.near is not None:
            latitude, longitude, radius = self.near
            parts.append(f"within {radius:g} km of {latitude:g},{longitude:g}")
        if self.country:
            parts.append(f"in country {self.country.upper()}")
        if self.place:
            parts.append(f"at {self.place!r}")
        if self.min_rating is not None:
            parts.append(f"rated {self.min_rating}+")
        return ", ".join(parts)


def _within(latitude: float, longitude: float, radius_km: float) -> list:
    """Conditions for "within ``radius_km``": a box the latitude index narrows, then the exact
    great-circle (haversine) distance, in SQL (SQLite's math functions, see storage.engine)."""
    south, north, west, east = bounding_box(latitude, longitude, radius_km)
    lon = ImageRow.longitude
    box = [ImageRow.latitude.between(south, north)]
    box.append(lon.between(west, east) if west <= east else or_(lon >= west, lon <= east))
    to_radians = math.pi / 180
    lat1, lat2 = latitude * to_radians, ImageRow.latitude * to_radians
    half_dlat = (lat2 - lat1) / 2
    half_dlon = (lon - longitude) * (to_radians / 2)
    a = func.sin(half_dlat) * func.sin(half_dlat) + math.cos(lat1) * func.cos(lat2) * func.sin(
        half_dlon
    ) * func.sin(half_dlon)
    return [*box, a <= math.sin(min(radius_km / (2 * EARTH_RADIUS_KM), math.pi / 2)) ** 2]


_FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF", "HEIC": "HEIF", "PHOTO": "IMAGE"}
# "image" and "video" are kinds: any picture, any video
_KINDS = {"IMAGE": ImageRow.duration_s.is_(None), "VIDEO": ImageRow.duration_s.is_not(None)}
_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF", "RAW", *_KINDS} | {
    extension[1:].upper() for extension in VIDEO_EXTENSIONS
}


def parse_range(value: str, name: str) -> tuple[float | None, float | None]:
    """``"20-35"``, ``"35"`` (exactly), ``"-800"`` (at most), ``"100-"`` (at least); a unit
    after the numbers (``35mm``, ``f/2.8``) is allowed.

    Raises:
        InputError: not a number or a range of numbers, or a range that runs backwards.
    """
    match = _RANGE.fullmatch(value.strip().lower().removeprefix("f/"))
    if not match or not (match["low"] or match["high"]):
        raise InputError(f"{name} {value!r} is not a number or a range such as 20-35")
    low = float(match["low"]) if match["low"] else None
    high = float(match["high"]) if match["high"] else None
    if match["dash"] is None:
        high = low
    if low is not None and high is not None and low > high:
        raise InputError(f"{name} {value!r} runs backwards; write the lower number first")
    return low, high


_EXPOSURE = re.compile(
    r"(?P<low>\d+(?:\.\d+)?(?:/\d+)?)?\s*s?\s*(?P<dash>-)?\s*(?P<high>\d+(?:\.\d+)?(?:/\d+)?)?\s*s?"
)


def parse_exposure(value: str) -> tuple[float | None, float | None]:
    """An exposure time or range in seconds as cameras write it: ``1/250``, ``1/250-1/60``,
    ``-1/500`` (that fast or faster), ``1-`` (a second or longer), ``30s``.

    Raises:
        InputError: not a time or a range of times, or a range that runs backwards.
    """
    match = _EXPOSURE.fullmatch(value.strip().lower())
    if not match or not (match["low"] or match["high"]):
        raise InputError(f"--exposure {value!r} is not a time or a range such as 1/250-1/60")
    try:
        low, high = (_seconds(match[end]) for end in ("low", "high"))
    except ZeroDivisionError:
        raise InputError(f"--exposure {value!r} divides by zero") from None
    if match["dash"] is None:
        high = low
    if low is not None and high is not None and low > high:
        raise InputError(f"--exposure {value!r} runs backwards; write the shorter time first")
    return low, high


def _seconds(text: str | None) -> float | None:
    if text is None:
        return None
    number, _, denominator = text.partition("/")
    return float(number) / float(denominator) if denominator else float(number)


def _span(span) -> str:
    low, high = (f"{v:g}" if v is not None else "" for v in span)
    return low if low == high else f"{low}–{high}"


_RANGE = re.compile(
    r"(?P<low>\d+(?:\.\d+)?)?\s*(?:mm)?\s*(?P<dash>-)?\s*(?P<high>\d+(?:\.\d+)?)?\s*(?:mm)?"
)


def _format_name(value: str) -> str:
    name = value.strip().lstrip(".").upper()
    name = _FORMAT_ALIASES.get(name, name)
    if name not in _FORMATS:
        known = ", ".join(sorted(_FORMATS)).lower()
        raise InputError(f"unknown file type {value!r}; use one of {known}")
    return name


def compose(vectors: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The unit vector of a weighted sum of unit vectors.

    Raises:
        InputError: the terms cancel out (nothing is left to search for).
    """
    total = np.zeros_like(vectors[0], dtype=np.float32)
    for vector, weight in zip(vectors, weights, strict=True):
        total += weight * vector / max(float(np.linalg.norm(vector)), 1e-12)
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise InputError("the query terms cancel each other out; change their weights")
    return total / norm


@dataclass(frozen=True)
class Relevance:
    """How to trim and order the best matches.

    ``within``: keep hits scoring at least the best score minus this margin. ``knee``: cut at the
    largest drop in the score curve. Both are relative to the query at hand, unlike one absolute
    threshold, which means different things for different queries. ``dedup``: collapse hits whose
    embeddings have at least this cosine similarity into the best of them. ``sort``: ``score`` or
    ``date`` (the kept hits in the order they were taken).
    """

    within: float | None = None
    knee: bool = False
    dedup: float | None = None
    sort: str = "score"

    def __post_init__(self):
        if self.sort not in ("score", "date"):
            raise InputError(f"--sort {self.sort!r}: use score or date")
        if self.within is not None and self.within < 0:
            raise InputError("--within is a score margin and cannot be negative")
        if self.dedup is not None and not 0 < self.dedup <= 1:
            raise InputError("--dedup-threshold is a cosine similarity in (0, 1]")


def cut_within(hits: list[ImageHit], margin: float) -> list[ImageHit]:
    if not hits:
        return hits
    return [h for h in hits if h.score >= hits[0].score - margin]


def cut_at_knee(hits: list[ImageHit]) -> list[ImageHit]:
    """Keep the hits before the largest drop between consecutive scores."""
    if len(hits) < 3:
        return hits
    drops = [hits[i].score - hits[i + 1].score for i in range(len(hits) - 1)]
    return hits[: int(np.argmax(drops)) + 1]


def collapse_near_duplicates(
    hits: list[ImageHit], vectors: dict[int, np.ndarray], threshold: float
) -> list[ImageHit]:
    """Fold each hit into the best-scoring earlier hit it is a near-duplicate of; the kept hit
    lists the paths folded into it."""
    kept: list[ImageHit] = []
    folded: dict[int, list[str]] = {}
    for hit in hits:
        twin = next((k for k in kept if float(vectors[k.id] @ vectors[hit.id]) >= threshold), None)
        if twin is None:
            kept.append(hit)
            folded[hit.id] = []
        else:
            folded[twin.id].append(hit.path)
    return [replace(h, duplicates=tuple(folded[h.id])) for h in kept]


def by_date(hits: list[ImageHit]) -> list[ImageHit]:
    return sorted(hits, key=lambda h: (h.taken_at or "", h.path))
