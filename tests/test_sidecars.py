"""XMP sidecars beside photos, in darktable's form (``IMG_1234.dng.xmp``, attributes) and
Lightroom's (``IMG_2000.xmp``, elements): their keywords, titles, ratings and GPS positions are
indexed with the photo, a changed sidecar is read again without encoding anything, and a
sidecar that cannot be read never costs the photo its place."""

from __future__ import annotations

import json
import os

import pytest

from indexer import index_paths
from mmsearch import InputError, open_library
from mmsearch.imaging.sidecar import read_sidecar, sidecar_of
from mmsearch.search.terms import ImageFilter
from tests.helpers.raw_photos import drawing, save_camera_raw

DARKTABLE = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:exif="http://ns.adobe.com/exif/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
    xmp:Rating="{rating}"
    exif:GPSLatitude="38,42.834N"
    exif:GPSLongitude="9,8.364W"
    darktable:xmp_version="5">
   <dc:subject>
    <rdf:Bag>
     <rdf:li>kestrel</rdf:li>
     <rdf:li>harbour</rdf:li>
    </rdf:Bag>
   </dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

LIGHTROOM = """<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/">
   <xmp:Rating>2</xmp:Rating>
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">Barn owl at dusk</rdf:li></rdf:Alt></dc:title>
   <lr:hierarchicalSubject>
    <rdf:Bag><rdf:li>Birds|Raptors|Owl</rdf:li></rdf:Bag>
   </lr:hierarchicalSubject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


@pytest.fixture
def edited(photos):
    """The shapes folder with a DNG and a JPEG that photo tools gave sidecars, and a JPEG whose
    sidecar is not XML."""
    save_camera_raw(photos / "IMG_1234.dng", drawing(), preview_size=400)
    (photos / "IMG_1234.dng.xmp").write_text(DARKTABLE.format(rating=4))
    drawing(1).save(photos / "IMG_2000.jpg")
    (photos / "IMG_2000.xmp").write_text(LIGHTROOM)
    drawing(1).save(photos / "IMG_3000.jpg")
    (photos / "IMG_3000.jpg.xmp").write_bytes(b"\x00\xffnot xml at all")
    return photos


def test_sidecars_are_found_and_read_in_both_forms(edited):
    assert sidecar_of(str(edited / "IMG_1234.dng")) == str(edited / "IMG_1234.dng.xmp")
    assert sidecar_of(str(edited / "IMG_2000.jpg")) == str(edited / "IMG_2000.xmp")
    assert sidecar_of(str(edited / "red_circle_0.png")) is None
    darktable = read_sidecar(str(edited / "IMG_1234.dng.xmp"))
    assert (darktable.rating, darktable.words) == (4, ("kestrel", "harbour"))
    assert (darktable.latitude, darktable.longitude) == (38.7139, -9.1394)
    lightroom = read_sidecar(str(edited / "IMG_2000.xmp"))
    assert lightroom.rating == 2
    assert set(lightroom.words) == {"Barn owl at dusk", "Birds", "Raptors", "Owl"}
    problems: list[str] = []
    assert read_sidecar(str(edited / "IMG_3000.jpg.xmp"), problems).words == ()
    assert len(problems) == 1 and problems[0].startswith("sidecar IMG_3000.jpg.xmp skipped")


def _names(hits) -> set[str]:
    return {h.path.rsplit("/", 1)[1] for h in hits}


def test_a_sidecar_gives_words_rating_and_place_and_an_edit_encodes_nothing(
    tmp_path, tiny_model, edited
):
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        index_paths(lib, [edited], workers=0)
        rated = lib.search_text("a photo", k=50, where=ImageFilter(min_rating=2))
        assert _names(rated) == {"IMG_1234.dng", "IMG_2000.jpg"}
        four = lib.search_text("a photo", k=50, where=ImageFilter(min_rating=4))
        assert _names(four) == {"IMG_1234.dng"} and four[0].rating == 4
        assert four[0].place == "Baixa, Lisbon, Portugal"  # the sidecar's geotag
        assert _names(lib.search_text("kestrel", k=5, mode="keyword")) == {"IMG_1234.dng"}
        assert _names(lib.search_text("raptors", k=5, mode="keyword")) == {"IMG_2000.jpg"}
        assert "IMG_3000.jpg" in _names(lib.search_text("a photo", k=100))  # indexed all the same

    sidecar = edited / "IMG_1234.dng.xmp"
    sidecar.write_text(DARKTABLE.format(rating=1).replace("kestrel", "osprey"))
    later = os.stat(sidecar).st_mtime_ns + 10**9
    os.utime(sidecar, ns=(later, later))
    (edited / "IMG_2000.xmp").unlink()  # a sidecar deleted: its words and rating go
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        summary = index_paths(lib, [edited], workers=0)
        assert (summary.added, summary.updated, summary.metadata_read) == (0, 0, 2)
        assert _names(lib.search_text("osprey", k=5, mode="keyword")) == {"IMG_1234.dng"}
        with pytest.raises(InputError, match="no image in the library matches"):
            lib.search_text("a photo", k=50, where=ImageFilter(min_rating=2))
        assert lib.search_text("raptors", k=5, mode="keyword") == []
        again = index_paths(lib, [edited], workers=0)
        assert again.metadata_read == 0  # read once per change


def test_a_copy_reads_its_own_sidecar(tmp_path, tiny_model, edited):
    """A duplicate takes its twin's vector, never its twin's sidecar."""
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        index_paths(lib, [edited], workers=0)
        copy = edited / "copy"
        copy.mkdir()
        (copy / "IMG_1234.dng").write_bytes((edited / "IMG_1234.dng").read_bytes())
        summary = index_paths(lib, [edited], workers=0)
        assert (summary.added, summary.reused) == (1, 1)
        hits = lib.search_text("a photo", k=50, where=ImageFilter(min_rating=4))
        assert _names(hits) == {"IMG_1234.dng"} and len(hits) == 1
        assert hits[0].path == str(edited / "IMG_1234.dng")


def test_the_cli_filters_by_rating_and_says_which_sidecar_was_left_out(cli, edited):
    result = cli("index", str(edited), "--verbose")
    assert result.exit_code == 0, result.output
    assert f"metadata of {edited / 'IMG_3000.jpg'}: sidecar IMG_3000.jpg.xmp skipped" in (
        result.stdout
    )
    found = cli("search", "a photo", "--min-rating", "4", "--json")
    assert found.exit_code == 0, found.output
    assert [h["path"].rsplit("/", 1)[1] for h in json.loads(found.stdout)] == ["IMG_1234.dng"]
    bad = cli("search", "a photo", "--min-rating", "9")
    assert bad.exit_code == 2 and "less than or equal to 5" in bad.output
