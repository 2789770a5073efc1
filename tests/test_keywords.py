"""Keyword search: the words that go with images (names, embedded metadata, descriptions), the
FTS5 trigram index that finds them in any script, and their fusion with the semantic ranking."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess

import pytest
from PIL import Image

from indexer import index_paths
from mmsearch import InputError, open_library
from mmsearch.imaging.embedded_text import embedded_text
from mmsearch.search.terms import QueryTerm
from mmsearch.words import name_words, query_terms

EXIFTOOL = shutil.which("exiftool")


def test_names_are_split_the_way_people_read_them():
    assert name_words("/photos/kyoto-trip_2024/IMG_2041.JPG") == (
        "photos kyoto-trip_2024 kyoto trip 2024 IMG_2041 IMG 2041"
    )
    assert name_words("/x/sunsetOverBay.png").endswith("sunsetOverBay sunset Over Bay")


def test_a_query_has_phrases_that_must_occur_and_words_that_may():
    assert query_terms('the "Hotel Sakura" receipt 京都 a of') == (
        ["hotel sakura"],
        ["receipt", "京都"],
    )
    assert query_terms('!!! ?? "" AND OR NEAR(*)') == ([], ["near(*"])
    # Function words match names they are not about ("dog_drawn_with_pen"), unless quoted.
    assert query_terms('a harbour with boats "with love"') == (["with love"], ["harbour", "boats"])


@pytest.mark.skipif(EXIFTOOL is None, reason="exiftool is not installed (.ci/run installs it)")
def test_metadata_written_by_a_real_photo_tool_is_read(tmp_path):
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (32, 24), "teal").save(photo)
    subprocess.run(
        [EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Title=Harbour at dusk",
         "-XMP-dc:Description=Boats in Lisbon", "-XMP-dc:Subject=kestrel",
         "-XMP-lr:HierarchicalSubject=Animals|Birds|kestrel", "-IPTC:Keywords=Alfama",
         "-IPTC:Caption-Abstract=Seen from the ferry", "-EXIF:ImageDescription=Tagus",
         "-EXIF:XPKeywords=river;evening", "-EXIF:UserComment=shot handheld", str(photo)],
        check=True,
    )  # fmt: skip
    with Image.open(photo) as picture:
        words = embedded_text(picture).splitlines()
    for expected in ("Harbour at dusk", "Boats in Lisbon", "kestrel", "Animals", "Birds",
                     "Alfama", "Seen from the ferry", "Tagus", "river", "evening",
                     "shot handheld"):  # fmt: skip
        assert expected in words
    assert words.count("kestrel") == 1


def test_malformed_metadata_is_skipped_and_the_picture_kept(tmp_path):
    photo = tmp_path / "broken.jpg"
    Image.new("RGB", (32, 24), "teal").save(photo, xmp=b"<x:xmpmeta><rdf:RDF><unclosed")
    problems = []
    with Image.open(photo) as picture:
        assert embedded_text(picture, problems) == ""
    assert problems and problems[0].startswith("XMP text skipped (")
    huge = tmp_path / "huge.jpg"
    Image.new("RGB", (8, 8)).save(huge, exif=_exif_description("word " * 12_000))
    with Image.open(huge) as picture:
        assert len(embedded_text(picture)) == 4000


def _exif_description(text: str) -> bytes:
    exif = Image.Exif()
    exif[0x010E] = text
    return exif.tobytes()


@pytest.fixture
def worded(tmp_path, tiny_model, photos):
    """The shapes library, with a Japanese-named file and a description file."""
    shutil.copy(photos / "blue_square_0.png", photos / "京都の夕日.png")
    descriptions = tmp_path / "descriptions.jsonl"
    descriptions.write_text(
        json.dumps({"image": "photos/red_circle_0.png", "caption": "the receipt from Hotel Sakura"})
    )
    from indexer.texts import read_descriptions

    lib = open_library(tmp_path / "lib", model=str(tiny_model))
    summary = index_paths(lib, [photos], workers=0, descriptions=read_descriptions(descriptions))
    assert summary.described == 1
    yield lib, photos
    lib.close()


def _names(hits) -> list[str]:
    return [h.path.rsplit("/", 1)[1] for h in hits]


def test_keyword_mode_finds_names_substrings_and_any_script(worded):
    lib, photos = worded
    circles = _names(lib.search_text("circle", k=50, mode="keyword"))
    assert circles and all("circle" in name for name in circles)
    assert _names(lib.search_text("京都", k=5, mode="keyword")) == ["京都の夕日.png"]  # 2 chars
    assert _names(lib.search_text("の夕日", k=5, mode="keyword")) == ["京都の夕日.png"]  # trigram
    hit = lib.search_text("Sakura", k=5, mode="keyword")[0]
    assert hit.path.endswith("red_circle_0.png")
    assert dict(hit.matched) == {"description": "the receipt from Hotel Sakura"}


def test_quoted_phrases_must_occur_and_minus_words_exclude(worded):
    lib, _ = worded
    assert _names(lib.search_text('"hotel sakura" circle', k=50, mode="keyword")) == [
        "red_circle_0.png"
    ]
    assert lib.search_text('"hotel kyoto"', k=5, mode="keyword") == []
    terms = [QueryTerm(1.0, text="circle"), QueryTerm(-1.0, text="red")]
    names = _names(lib.search(terms, k=50, mode="keyword"))
    assert names and not any("red" in n for n in names)


def test_hybrid_puts_the_named_image_first_and_keeps_the_semantic_ones(worded):
    lib, _ = worded
    hits = lib.search_text("Sakura", k=5, mode="hybrid")
    assert len(hits) == 5  # the semantic ranking fills in
    assert hits[0].path.endswith("red_circle_0.png") or hits[1].path.endswith("red_circle_0.png")
    semantic = lib.search_text("a blue triangle", k=5, mode="semantic")
    hybrid = lib.search_text("a blue triangle", k=5, mode="hybrid")
    assert {h.id for h in hybrid[:3]} & {h.id for h in semantic[:3]}
    assert all(dict(h.matched) for h in hybrid)  # each says why it matched


@pytest.mark.parametrize("query", ['"', "AND", 'NEAR("a" "b")', "*", "circle OR", "' -- ;"])
def test_fts_syntax_in_a_query_is_just_text(worded, query):
    lib, _ = worded
    for mode in ("keyword", "hybrid"):
        lib.search_text(query, k=5, mode=mode)  # never a database error


def test_an_unknown_mode_is_refused(worded):
    lib, _ = worded
    with pytest.raises(InputError, match="search mode 'fuzzy': use hybrid, semantic, keyword"):
        lib.search_text("circle", mode="fuzzy")


def test_words_go_with_their_image(worded):
    lib, photos = worded
    kinds = {w.kind: w.text for w in lib.image_texts(photos / "red_circle_0.png")}
    assert kinds["description"] == "the receipt from Hotel Sakura"
    assert "red_circle_0" in kinds["name"]
    lib.forget([photos / "red_circle_0.png"])
    assert lib.search_text("Sakura", k=5, mode="keyword") == []
    with pytest.raises(InputError, match="is not in library"):
        lib.image_texts(photos / "red_circle_0.png")


def test_an_older_library_gets_its_names_as_words(tmp_path, tiny_model, photos):
    lib_dir = tmp_path / "lib"
    with open_library(lib_dir, model=str(tiny_model)) as lib:
        index_paths(lib, [photos], workers=0)
    db = sqlite3.connect(lib_dir / "library.db")
    for name in ("image_texts_insert", "image_texts_delete", "image_texts_update"):
        db.execute(f"DROP TRIGGER {name}")
    db.execute("DROP TABLE image_words")
    db.execute("DROP TABLE image_texts")
    db.execute("UPDATE settings SET value = '4' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with open_library(lib_dir, model=str(tiny_model)) as lib:
        assert _names(lib.search_text("triangle", k=50, mode="keyword"))
        assert all("triangle" in n for n in _names(lib.search_text("triangle", mode="keyword")))


def test_the_cli_searches_in_every_mode_and_shows_the_words(cli, photos):
    cli("index", str(photos))
    for mode in ("hybrid", "semantic", "keyword"):
        result = cli("search", "circle", "--mode", mode, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)
    keyword = json.loads(cli("search", "circle", "--mode", "keyword", "--json").stdout)
    assert "circle" in keyword[0]["matched"]["name"]
    table = cli("search", "circle", "--mode", "hybrid", "-k", "20").stdout.splitlines()
    named = [line for line in table if "circle" in line.rsplit("/", 1)[-1]]
    assert named and all(line.endswith("  (words in its name)") for line in named)
    assert all("(words in" not in line for line in table if line not in named)
    shown = cli("text", str(photos / "red_circle_0.png"))
    assert shown.exit_code == 0 and shown.stdout.startswith("[name] ")


def test_check_finds_a_damaged_keyword_index_and_repair_rebuilds_it(worded):
    from mmsearch.checking import check_library, repair_library

    lib, _ = worded
    db = sqlite3.connect(lib.library_dir / "library.db")
    db.execute(
        "INSERT INTO image_words(image_words, rowid, text) VALUES ('delete', 1, 'not its words')"
    )
    db.commit()
    db.close()
    problems = check_library(lib)
    assert [p.part for p in problems] == ["keywords"]
    assert repair_library(lib, problems) == ["rebuilt the keyword index from the stored words"]
    assert check_library(lib) == []


def test_the_contact_sheet_says_why_with_the_words_marked(worded):
    from mmsearch.serve.pages import contact_sheet

    lib, _ = worded
    hits = lib.search_text("Sakura <b>", k=3, mode="keyword")
    page = contact_sheet(hits, "mmsearch: Sakura", ["sakura", "<b>"])
    assert '<div class="why">description: the receipt from Hotel <mark>Sakura</mark></div>' in page


@pytest.mark.skipif(EXIFTOOL is None, reason="exiftool is not installed (.ci/run installs it)")
def test_the_next_index_reads_the_metadata_of_images_stored_before_words(
    tmp_path, tiny_model, photos
):
    """A library from before schema 5 holds no metadata words: the next `index` reads them from
    the files' headers, without encoding any image again, and only once."""
    tagged = photos / "tagged.jpg"
    Image.open(photos / "red_circle_0.png").convert("RGB").save(tagged)
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Subject=Cappadocia",
                    str(tagged)], check=True)  # fmt: skip
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        index_paths(lib, [photos], workers=0)
        assert _names(lib.search_text("Cappadocia", mode="keyword")) == ["tagged.jpg"]
    db = sqlite3.connect(tmp_path / "lib" / "library.db")
    db.execute("DELETE FROM image_texts WHERE kind = 'metadata'")  # as an upgraded library has
    db.commit()
    db.close()
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        assert lib.search_text("Cappadocia", mode="keyword") == []
        summary = index_paths(lib, [photos], workers=0)
        assert (summary.unchanged, summary.metadata_read, summary.added) == (28, 28, 0)
        assert _names(lib.search_text("Cappadocia", mode="keyword")) == ["tagged.jpg"]
        assert index_paths(lib, [photos], workers=0).metadata_read == 0


def test_a_substring_scan_ranks_by_bm25(tmp_path, tiny_model, photos):
    """Two-character terms (and every term on PostgreSQL) are found by a substring scan; it
    ranks as FTS5 does: more occurrences first, then a shorter text, never by luck."""
    from indexer.texts import read_descriptions

    said = {
        "red_circle_0.png": "京都 京都 京都",  # the term three times in a short text
        "red_circle_1.png": "京都",  # once, in a short text
        "red_circle_2.png": "京都 and then a long way round, past the harbour and the hills",
    }
    descriptions = tmp_path / "descriptions.jsonl"
    descriptions.write_text(
        "".join(json.dumps({"image": f"photos/{n}", "caption": t}) + "\n" for n, t in said.items())
    )
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        index_paths(lib, [photos], workers=0, descriptions=read_descriptions(descriptions))
        assert _names(lib.search_text("京都", k=5, mode="keyword")) == list(said)
