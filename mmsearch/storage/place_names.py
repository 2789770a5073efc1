"""The place columns and ``place`` words of images, derived from their GPS positions when they
are stored (:mod:`mmsearch.places` names them), and the count of where images were taken."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from mmsearch.imaging.exif import Shot
from mmsearch.places import NO_PLACE, name_places
from mmsearch.records import ImageRecord, Words
from mmsearch.storage.engine import chunked
from mmsearch.storage.image_words import text_columns
from mmsearch.storage.schema import ImageRow, ImageText


class PlaceCount(NamedTuple):
    """A place where the library's images were taken (:meth:`ImageCatalogue.places`)."""

    country_code: str | None
    country: str | None
    region: str | None
    city: str | None
    images: int


def count_places(session: Session) -> list[PlaceCount]:
    """Each named place with how many images were taken there, most first; images with a GPS
    position far from every town come last, with ``city`` None."""
    key = (ImageRow.country_code, ImageRow.place_country, ImageRow.place_region,
           ImageRow.place_city)  # fmt: skip
    stmt = (
        select(*key, func.count())
        .where(ImageRow.latitude.is_not(None))
        .group_by(*key)
        .order_by(func.count().desc(), *key)
    )
    rows = [PlaceCount(*row) for row in session.execute(stmt).all()]
    return sorted(rows, key=lambda r: r.city is None)


def place_columns(shots: Sequence[Shot | ImageRecord]) -> list[dict]:
    """The place columns of each shot: the nearest town's names where it has a GPS position
    (the geocoder's data is loaded only then)."""
    positions = [(s.latitude, s.longitude) for s in shots if s.latitude is not None]
    named = iter(name_places(positions) if positions else ())
    return [
        _place_columns(next(named)) if s.latitude is not None else dict(NO_PLACE) for s in shots
    ]


def _place_columns(place) -> dict:
    return place.as_columns() if place is not None else dict(NO_PLACE)


def replace_place_words(session: Session, placed: list[tuple[int, dict]]) -> None:
    """Each image's ``place`` words: its place's names and country code, searchable as words."""
    for chunk in chunked([image_id for image_id, _ in placed]):
        session.execute(
            delete(ImageText).where(ImageText.image_id.in_(chunk), ImageText.kind == "place")
        )
    rows = [
        text_columns(image_id, Words("place", _place_words(place)))
        for image_id, place in placed
        if place["place_city"]
    ]
    if rows:  # Core, many rows a statement (see ImageCatalogue.put_images)
        session.execute(insert(ImageText.__table__), rows)


def _place_words(place: dict) -> str:
    names = (place["place_city"], place["place_region"], place["place_country"])
    return " ".join(dict.fromkeys(n for n in (*names, place["country_code"]) if n))
