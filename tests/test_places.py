"""Places: GPS positions read from the EXIF of JPEG and DNG files (written by exiftool, or by
Pillow where a photo must be malformed), named offline after the nearest town, filtered inside
the search, searchable as words, listed by ``mmsearch places``, and filled in for libraries
made before."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys

import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from indexer import index_paths
from mmsearch import InputError, open_library
from mmsearch.imaging.exif import shot_details
from mmsearch.places import bounding_box, distance_km, find_place, name_places, parse_radius
from mmsearch.search.terms import ImageFilter
from tests.helpers.raw_photos import drawing, save_camera_raw

EXIFTOOL = shutil.which("exiftool")
pytestmark = pytest.mark.skipif(EXIFTOOL is None, reason="exiftool (.ci/run installs it)")

# name: (latitude, longitude), as a phone writes them (hemisphere in the Ref tags)
POSITIONS = {
    "lisbon.jpg": (38.7139, -9.1394),  # the Baixa, downtown Lisbon
    "belem.jpg": (38.6970, -9.2060),  # 6 km west along the river
    "kyoto.jpg": (35.0116, 135.7681),
    "kehl.jpg": (48.5729, 7.8150),  # Germany, 4 km across the Rhine from Strasbourg (France)
    "atlantic.jpg": (40.0, -40.0),  # at sea: no town within 50 km
    "null_island.jpg": (0.0, 0.0),  # what a receiver without a fix writes
}


def _exiftool_position(path, latitude: float, longitude: float) -> None:
    north, east = "S" if latitude < 0 else "N", "W" if longitude < 0 else "E"
    tags = [f"-GPSLatitude={abs(latitude)}", f"-GPSLatitudeRef={north}",
            f"-GPSLongitude={abs(longitude)}", f"-GPSLongitudeRef={east}"]  # fmt: skip
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", *tags, str(path)], check=True)


def _pillow_position(path, latitude, longitude, maker_note: bytes | None = None) -> None:
    """Rationals exactly as given (exiftool refuses to write a latitude over 90 or 0/0)."""
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (latitude, IFDRational(0), IFDRational(0)), "E", (
        longitude, IFDRational(0), IFDRational(0))  # fmt: skip
    if maker_note is not None:
        exif.get_ifd(0x8769)[0x927C] = maker_note
    Image.open(path).save(path, exif=exif)


@pytest.fixture
def travels(photos):
    """The shapes folder with photos from known places, and malformed ones."""
    source = photos / "red_circle_0.png"
    for name, (latitude, longitude) in POSITIONS.items():
        Image.open(source).convert("RGB").save(photos / name)
        _exiftool_position(photos / name, latitude, longitude)
    for name, latitude in (("over_the_pole.jpg", IFDRational(95)),
                           ("zero_denominator.jpg", IFDRational(38, 0))):  # fmt: skip
        Image.open(source).convert("RGB").save(photos / name)
        _pillow_position(photos / name, latitude, IFDRational(10))
    save_camera_raw(photos / "porto.dng", drawing(), preview_size=400)  # a RAW file's EXIF
    _exiftool_position(photos / "porto.dng", 41.1496, -8.6110)
    Image.open(source).convert("RGB").save(photos / "maker_note.jpg")
    _pillow_position(photos / "maker_note.jpg", IFDRational(35, 1), IFDRational(13976, 100),
                     maker_note=b"\xff\xfe\x80\x81 not UTF-8")  # fmt: skip
    return photos


def test_positions_come_from_the_exif_and_impossible_ones_are_left_out(travels):
    def read(name):
        problems: list[str] = []
        with Image.open(travels / name) as picture:
            shot = shot_details(picture.getexif(), problems)
        return (shot.latitude, shot.longitude), problems

    assert read("lisbon.jpg") == ((38.7139, -9.1394), [])
    assert read("kyoto.jpg") == ((35.0116, 135.7681), [])
    assert read("maker_note.jpg") == ((35.0, 139.76), [])  # Tokyo; the maker note is ignored
    for name, reason in (("null_island.jpg", "null island"), ("over_the_pole.jpg", "off the globe"),
                         ("zero_denominator.jpg", "zero denominator")):  # fmt: skip
        position, problems = read(name)
        assert position == (None, None)
        assert len(problems) == 1 and reason in problems[0], problems


def test_places_are_named_after_the_nearest_town_and_none_at_sea():
    lisbon, kehl, atlantic, fiji = name_places([(38.7139, -9.1394), (48.5729, 7.8150),
                                                (40.0, -40.0), (-17.8, 178.4)])  # fmt: skip
    assert lisbon.city == "Baixa"  # GeoNames' towns include a city's districts: the nearest
    assert (lisbon.region, lisbon.country, lisbon.country_code) == ("Lisbon", "Portugal", "PT")
    assert (kehl.city, kehl.country_code) == ("Kehl", "DE")  # not Strasbourg across the Rhine
    assert atlantic is None
    assert fiji.country_code == "FJ"  # beside the 180th meridian
    assert find_place("Lisbon").country_code == "PT"  # the largest Lisbon, not Maine's
    assert find_place("lisbon, us").region == "Maine"
    with pytest.raises(InputError, match="no town or city called 'Qwzzyx'"):
        find_place("Qwzzyx")


def test_a_town_found_by_name_needs_no_tree_of_positions():
    """`--near Kyoto` on a cold query: scipy's import and the k-d tree wait for a position."""
    code = ("import sys; from mmsearch.places import find_place, name_places; "
            "assert find_place('Kyoto').country_code == 'JP'; "
            "print('scipy.spatial' in sys.modules); "
            "assert name_places([(35.0116, 135.7681)])[0].city == 'Kyoto'; "
            "print('scipy.spatial' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_distances_and_boxes_hold_at_the_poles_and_across_the_date_line():
    assert distance_km(38.7139, -9.1394, 35.0116, 135.7681) == pytest.approx(11_070, rel=0.01)
    assert distance_km(0, 179.95, 0, -179.95) == pytest.approx(11.1, rel=0.01)
    south, north, west, east = bounding_box(0, 179.95, 20)
    assert west > east  # the box wraps around the 180th meridian
    assert bounding_box(89.99, 0, 50)[2:] == (-180, 180)  # every longitude near the pole
    assert parse_radius("800m") == 0.8 and parse_radius("3mi") == pytest.approx(4.828, rel=1e-3)
    with pytest.raises(InputError, match="--radius 'far'"):
        parse_radius("far")


def _names(hits) -> set[str]:
    return {h.path.rsplit("/", 1)[1] for h in hits}


def test_filters_by_place_run_inside_the_search(tmp_path, tiny_model, travels):
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        index_paths(lib, [travels], workers=0)

        def only(**where) -> set[str]:
            return _names(lib.search_text("a photo", k=50, where=ImageFilter(**where)))

        assert only(country="pt") == {"lisbon.jpg", "belem.jpg", "porto.dng"}
        assert only(place="kyoto") == {"kyoto.jpg"}
        assert only(place="Portugal") == {"lisbon.jpg", "belem.jpg", "porto.dng"}  # a country
        assert only(place="porto") == {"porto.dng"}
        assert only(near=(38.7139, -9.1394, 2)) == {"lisbon.jpg"}  # Belém is 6 km away
        assert only(near=(38.7139, -9.1394, 10)) == {"lisbon.jpg", "belem.jpg"}
        assert only(near=(40.0, -40.0, 5)) == {"atlantic.jpg"}  # no place name, still near
        places = {(p.city, p.country_code): p.images for p in lib.places()}
        assert places[("Kehl", "DE")] == 1 and places[(None, None)] == 1  # the one at sea
        assert sum(places.values()) == 7  # maker_note.jpg (Tokyo) too; null island is none


def test_the_cli_filters_and_lists_places(cli, travels):
    assert cli("index", str(travels)).exit_code == 0

    def found(*options) -> set[str]:
        result = cli("search", "a photo", "-k", "50", *options, "--json")
        assert result.exit_code == 0, result.output
        return {h["path"].rsplit("/", 1)[1] for h in json.loads(result.stdout)}

    assert found("--near", "Lisbon") == {"lisbon.jpg", "belem.jpg"}
    assert found("--near", "38.7139,-9.1394", "--radius", "2km") == {"lisbon.jpg"}
    assert found("--country", "JP") == {"kyoto.jpg", "maker_note.jpg"}
    assert found("--place", "Kyoto") == {"kyoto.jpg"}
    kyoto = json.loads(cli("search", "a photo", "--place", "Kyoto", "--json").stdout)[0]
    assert (kyoto["place"], kyoto["position"]) == ("Kyoto, Kyoto, Japan", [35.0116, 135.7681])
    listed = cli("places", "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert sum(r["images"] for r in rows if r["country_code"] == "PT") == 3
    assert {r["region"] for r in rows if r["country_code"] == "PT"} == {"Lisbon", "Porto"}
    assert rows[-1]["city"] is None  # the one at sea comes last
    table = cli("places").stdout
    assert "far from any town" in table and "Kehl" in table
    for options, message in (
        (["--near", "Qwzzyx"], "no town or city called 'Qwzzyx'"),
        (["--near", "95,10"], "off the globe"),
        (["--radius", "5km"], "--radius goes with --near"),
        (["--country", "Portugal"], "two-letter ISO code"),
    ):
        bad = cli("search", "a photo", *options)
        assert bad.exit_code == 1 and message in bad.stderr, bad.output


def test_place_names_are_searchable_words(cli, travels):
    assert cli("index", str(travels)).exit_code == 0
    result = cli("search", "Kyoto", "--mode", "keyword", "--json")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert [h["path"].rsplit("/", 1)[1] for h in hits] == ["kyoto.jpg"]
    assert "place" in hits[0]["matched"]


def test_verbose_says_which_positions_were_left_out(cli, travels):
    result = cli("index", str(travels), "--verbose")
    assert result.exit_code == 0, result.output
    left_out = {
        line.split(": ", 1)[0].removeprefix("metadata of ").rsplit("/", 1)[1]
        for line in result.stdout.splitlines()
        if line.startswith("metadata of ") and "GPS position skipped" in line
    }
    assert left_out == {"null_island.jpg", "over_the_pole.jpg", "zero_denominator.jpg"}


def test_a_library_from_before_gets_its_places_without_encoding_again(
    tmp_path, tiny_model, travels
):
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        index_paths(lib, [travels], workers=0)
    db = sqlite3.connect(tmp_path / "lib" / "library.db")
    db.execute("UPDATE images SET latitude = NULL, longitude = NULL, place_city = NULL, "
               "place_region = NULL, place_country = NULL, country_code = NULL")  # fmt: skip
    db.execute("DELETE FROM image_texts WHERE kind = 'place'")
    db.execute("UPDATE settings SET value = 5 WHERE key = 'schema_version'")  # as schema 5 had
    db.commit()
    db.close()
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        assert lib.images.headers_outdated()  # the upgrade asks for every header again...
        assert len(lib.image_texts(travels / "kyoto.jpg")) == 2  # ...its words kept meanwhile
        summary = index_paths(lib, [travels], workers=0)
        assert (summary.added, summary.updated) == (0, 0)
        assert summary.metadata_read == summary.unchanged  # every header read once, nothing else
        assert not lib.images.headers_outdated()
        assert index_paths(lib, [travels], workers=0).metadata_read == 0
        hits = lib.search_text("a photo", k=50, where=ImageFilter(country="DE"))
        assert _names(hits) == {"kehl.jpg"}
