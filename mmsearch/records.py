"""What the indexers hand to a library to store."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class Words(NamedTuple):
    """Words that go with an image (ImageText): ``kind`` is ``name``, ``metadata``,
    ``description``, ``ocr`` or ``place``; an OCR text has one line per region, and
    ``regions`` holds each line's box (left, top, right, bottom as fractions of the picture)."""

    kind: str
    text: str
    regions: tuple[tuple[float, float, float, float], ...] | None = None


class MomentRecord(NamedTuple):
    """A moment of a video (MomentRow): ``t`` seconds in, and its frame's vector."""

    t: float
    vector: np.ndarray


@dataclass(frozen=True)
class ImageRecord:
    """An image file and what the indexer learnt of it, ready to be stored."""

    path: str
    size: int
    mtime_ns: int
    width: int
    height: int
    format: str | None
    content_hash: str | None = None
    taken_at: str | None = None  # ISO 8601 local time (see ImageRow.taken_at)
    taken_from: str | None = None  # "exif", "container" (a video's) or "mtime"
    # How it was taken (mmsearch.imaging.exif.Shot), where the file says
    camera_make: str | None = None
    camera_model: str | None = None
    lens: str | None = None
    focal_mm: float | None = None
    focal_35mm: float | None = None
    aperture: float | None = None
    exposure_s: float | None = None
    iso: int | None = None
    latitude: float | None = None  # where (GPS); the place's name is the library's to derive
    longitude: float | None = None
    rating: int | None = None  # XMP stars, the sidecar's where it has one
    sidecar_mtime_ns: int | None = None  # of the XMP sidecar read with it, when it has one
    inode: int | None = None  # recognises the file renamed or moved (storage.identity)
    duration_s: float | None = None  # a video: its length (None: a picture)
    poster_t: float | None = None  # a video: the moment that stands for it (its vector's)
    texts: tuple[Words, ...] = ()  # the words that go with it, by kind
    moments: tuple[MomentRecord, ...] = ()  # a video's, in time order


@dataclass(frozen=True)
class TextRecord:
    """One text of a collection file."""

    text: str
    external_id: str | None = None
    meta: dict | None = None


def mtime_iso(mtime_ns: int) -> str:
    """A file modification time as ISO 8601 local time, the form ``taken_at`` is stored in."""
    moment = datetime.datetime.fromtimestamp(mtime_ns / 1e9)
    return moment.replace(microsecond=0).isoformat()
