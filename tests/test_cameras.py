"""Cameras, lenses and exposure: read from EXIF written by a real photo tool (exiftool), stored
with each image, filtered inside the search, and filled in for libraries made before."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess

import pytest
from PIL import Image

from indexer import index_paths
from mmsearch import InputError, open_library
from mmsearch.imaging.exif import shot_details
from mmsearch.search.terms import ImageFilter, parse_exposure, parse_range

EXIFTOOL = shutil.which("exiftool")
pytestmark = pytest.mark.skipif(EXIFTOOL is None, reason="exiftool (.ci/run installs it)")

SHOTS = {
    "street.jpg": ["-Make=FUJIFILM", "-Model=X100V", "-LensModel=XF23mmF2 R WR", "-FocalLength=23",
                   "-FocalLengthIn35mmFormat=35", "-FNumber=2", "-ExposureTime=1/250", "-ISO=400"],
    "wedding.jpg": ["-Make=Canon", "-Model=Canon EOS R6", "-LensModel=RF24-105mm F4 L IS USM",
                    "-FocalLength=50", "-FNumber=8", "-ExposureTime=1/125", "-ISO=3200"],
    "portrait.jpg": ["-Make=SONY", "-Model=ILCE-7M3", "-LensModel=FE 35mm F1.8", "-FocalLength=35",
                     "-FNumber=1.8", "-ExposureTime=1/1000", "-ISO=100"],
    "broken.jpg": ["-Make=Nikon", "-FNumber=0", "-ISO=0", "-FocalLength=0"],
}  # fmt: skip


@pytest.fixture
def shots(tmp_path, photos):
    for name, tags in SHOTS.items():
        Image.open(photos / "red_circle_0.png").convert("RGB").save(photos / name)
        subprocess.run([EXIFTOOL, "-q", "-overwrite_original", *tags, str(photos / name)],
                       check=True)  # fmt: skip
    return photos


def test_settings_come_from_the_exif_and_impossible_values_are_left_out(shots):
    with Image.open(shots / "street.jpg") as picture:
        street = shot_details(picture.getexif())
    assert (street.camera_make, street.camera_model, street.lens) == (
        "FUJIFILM",
        "X100V",
        "XF23mmF2 R WR",
    )
    assert (street.focal_mm, street.focal_35mm, street.aperture) == (23, 35, 2)
    assert (street.exposure_s, street.iso) == (0.004, 400)
    with Image.open(shots / "broken.jpg") as picture:
        broken = shot_details(picture.getexif())
    assert broken.camera_make == "Nikon"
    assert broken.aperture is broken.iso is broken.focal_mm is None  # f/0, ISO 0, 0 mm


def test_ranges_are_read_as_photographers_write_them():
    assert parse_range("20-35", "--focal") == (20, 35)
    assert parse_range("35mm", "--focal") == (35, 35)
    assert parse_range("f/2.8", "--aperture") == (2.8, 2.8)
    assert parse_range("-800", "--iso") == (None, 800)
    with pytest.raises(InputError, match="--focal '35-20' runs backwards"):
        parse_range("35-20", "--focal")
    with pytest.raises(InputError, match="--focal 'wide' is not a number"):
        parse_range("wide", "--focal")
    assert parse_exposure("1/250") == (0.004, 0.004)
    assert parse_exposure("1/250-1/60") == (0.004, 1 / 60)
    assert parse_exposure("-1/500") == (None, 0.002)
    assert parse_exposure("30s-") == (30, None)
    with pytest.raises(InputError, match="runs backwards"):
        parse_exposure("1/60-1/250")
    with pytest.raises(InputError, match="divides by zero"):
        parse_exposure("1/0")
    with pytest.raises(InputError, match="is not a time"):
        parse_exposure("fast")


def _names(hits) -> set[str]:
    return {h.path.rsplit("/", 1)[1] for h in hits}


def test_filters_by_camera_lens_focal_aperture_and_iso(tmp_path, tiny_model, shots):
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        index_paths(lib, [shots], workers=0)

        def only(**where) -> set[str]:
            return _names(lib.search_text("a photo", k=50, where=ImageFilter(**where)))

        assert only(camera="x100v") == {"street.jpg"}
        assert only(camera="canon") == {"wedding.jpg"}
        assert only(lens="35 mm") == {"portrait.jpg"}  # "FE 35mm F1.8"
        assert only(focal=(20, 35)) == {"street.jpg", "portrait.jpg"}  # 35 mm equivalents
        assert only(aperture=(1.4, 2.8)) == {"street.jpg", "portrait.jpg"}
        assert only(iso=(None, 800)) == {"street.jpg", "portrait.jpg"}
        assert only(exposure=(None, 1 / 500)) == {"portrait.jpg"}  # 1/1000
        assert only(exposure=(1 / 250, 1 / 60)) == {"street.jpg", "wedding.jpg"}
        assert only(camera="sony", iso=(None, 800)) == {"portrait.jpg"}
        with pytest.raises(InputError, match="no image in the library matches the filters"):
            only(camera="Leica")


def test_the_cli_filters_by_how_a_picture_was_taken(cli, shots):
    assert cli("index", str(shots)).exit_code == 0
    result = cli("search", "a photo", "--focal", "20-35", "--iso-max", "800", "--json")
    assert result.exit_code == 0, result.output
    hits = {h["path"].rsplit("/", 1)[1]: h for h in json.loads(result.stdout)}
    assert set(hits) == {"street.jpg", "portrait.jpg"}
    assert (hits["street.jpg"]["camera"], hits["street.jpg"]["lens"]) == (
        "FUJIFILM X100V",
        "XF23mmF2 R WR",
    )
    assert hits["portrait.jpg"]["camera"] == "SONY ILCE-7M3"
    fast = cli("search", "a photo", "--exposure", "-1/500", "--json")
    assert [h["path"].rsplit("/", 1)[1] for h in json.loads(fast.stdout)] == ["portrait.jpg"]
    bad = cli("search", "a photo", "--focal", "wide")
    assert bad.exit_code == 1 and "--focal 'wide' is not a number" in bad.stderr


def test_a_library_from_before_gets_its_cameras_without_encoding_again(tmp_path, tiny_model, shots):
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        index_paths(lib, [shots], workers=0)
    db = sqlite3.connect(tmp_path / "lib" / "library.db")
    db.execute("UPDATE images SET camera_make = NULL, camera_model = NULL, lens = NULL, "
               "focal_mm = NULL, focal_35mm = NULL, aperture = NULL, exposure_s = NULL, "
               "iso = NULL")  # fmt: skip
    db.execute("DELETE FROM image_texts WHERE kind = 'metadata'")  # as schema 4 had neither
    db.commit()
    db.close()
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        summary = index_paths(lib, [shots], workers=0)
        assert (summary.added, summary.updated, summary.metadata_read) == (0, 0, 31)
        hits = lib.search_text("a photo", k=50, where=ImageFilter(camera="X100V"))
        assert _names(hits) == {"street.jpg"}


def test_verbose_names_each_metadata_field_left_out(cli, shots):
    """broken.jpg says f/0, ISO 0 and 0 mm: it is indexed, and --verbose says what was left out
    and why."""
    result = cli("index", str(shots), "--verbose")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("metadata of ")]
    broken = [line for line in lines if line.startswith(f"metadata of {shots / 'broken.jpg'}: ")]
    assert {line.split(": ", 1)[1].split(" ", 1)[0] for line in broken} == {
        "focal_mm",
        "aperture",
        "iso",
    }
    assert all("is not a possible value" in line for line in broken)
