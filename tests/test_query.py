"""Composed queries, filters inside the search, relative cut-offs, dates and near-duplicates."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from mmsearch.errors import InputError
from mmsearch.results import ImageHit
from mmsearch.search.terms import QueryTerm, cut_at_knee, cut_within
from tests.conftest import BOTH_BACKENDS

JUNE_2024 = 1_718_000_000  # 2024-06-10
MARCH_2020 = 1_584_000_000  # 2020-03-12


def _hits(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _names(hits) -> list[str]:
    return [Path(h["path"]).name for h in hits]


@pytest.fixture
def dated(cli, photos):
    """The shapes, the red ones dated June 2024 and the rest March 2020, plus a JPEG photo with an
    EXIF date, a portrait and a landscape picture in a sub-folder."""
    for path in photos.glob("*.png"):
        when = JUNE_2024 if path.name.startswith("red") else MARCH_2020
        os.utime(path, (when, when))
    sub = photos / "sub"
    sub.mkdir()
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "2019:05:04 12:30:00"
    Image.new("RGB", (60, 40), (30, 60, 220)).save(sub / "landscape.jpg", exif=exif)
    Image.new("RGB", (40, 60), (220, 30, 30)).save(sub / "portrait.png")
    assert cli("index", str(photos)).exit_code == 0
    return photos


def test_term_syntax(tmp_path):
    image = tmp_path / "me.jpg"
    Image.new("RGB", (8, 8)).save(image)
    assert QueryTerm.parse("sunset") == QueryTerm(1.0, text="sunset")
    assert QueryTerm.parse("2:sunset") == QueryTerm(2.0, text="sunset")
    assert QueryTerm.parse("0.5:sunset", sign=-1) == QueryTerm(-0.5, text="sunset")
    assert QueryTerm.parse(f"3:{image}") == QueryTerm(3.0, image=str(image))
    assert QueryTerm.parse("at 10:30 pm") == QueryTerm(1.0, text="at 10:30 pm")
    with pytest.raises(InputError, match=r"query image .*nope.jpg does not exist"):
        QueryTerm.parse(str(tmp_path / "nope.jpg"))


def test_plus_an_image_outweighs_the_text_and_leaves_the_image_out(cli, photos):
    cli("index", str(photos))
    query_image = photos / "blue_square_0.png"
    hits = _hits(cli("search", "a red circle", "--plus", f"3:{query_image}", "-k", "3", "--json"))
    assert sum(n.startswith("blue_square") for n in _names(hits)) >= 2
    assert not any(n.startswith("red_circle") for n in _names(hits))
    assert len(hits) == 3 and "blue_square_0.png" not in _names(hits)


@BOTH_BACKENDS
def test_minus_removes_a_concept(cli, photos):
    cli("index", str(photos))
    plain = _names(_hits(cli("search", "a red circle", "-k", "6", "--json")))
    assert sum(n.startswith("red_circle") for n in plain[:3]) >= 2
    without_red = _names(
        _hits(cli("search", "a red circle", "--minus", "2:a red square", "-k", "3", "--json"))
    )
    assert not any(n.startswith("red_square") for n in without_red)


def test_terms_that_cancel_out(cli, photos):
    cli("index", str(photos))
    result = cli("search", "a red circle", "--minus", "a red circle")
    assert result.exit_code == 1
    assert "the query terms cancel each other out" in result.stderr


@BOTH_BACKENDS
def test_folder_filter_is_inside_the_search(cli, dated):
    # The sub-folder holds two pictures, neither of them a green triangle: a top-k-then-filter
    # search would return nothing; filtering inside the search returns both.
    hits = _hits(cli("search", "a green triangle", "--in", str(dated / "sub"), "--json"))
    assert sorted(_names(hits)) == ["landscape.jpg", "portrait.png"]


@BOTH_BACKENDS
def test_date_filters_use_exif_then_mtime(cli, dated):
    june = _names(_hits(cli("search", "a shape", "--from", "2024-06", "--to", "2024-06", "-k",
                            "50", "--json")))  # fmt: skip
    assert june and all(n.startswith("red") for n in june)
    assert "portrait.png" not in june  # indexed today, not in June 2024
    may_2019 = _hits(cli("search", "a shape", "--to", "2019", "--json"))
    assert _names(may_2019) == ["landscape.jpg"]
    assert may_2019[0]["taken_at"] == "2019-05-04T12:30:00"


@BOTH_BACKENDS
def test_size_orientation_and_type_filters(cli, dated):
    portrait = _names(_hits(cli("search", "a shape", "--orientation", "portrait", "--json")))
    assert portrait == ["portrait.png"]
    wide = _names(_hits(cli("search", "a shape", "--min-width", "50", "--json")))
    assert wide == ["landscape.jpg"]
    jpeg = _hits(cli("search", "a shape", "--type", "jpg", "--json"))
    assert _names(jpeg) == ["landscape.jpg"] and jpeg[0]["format"] == "JPEG"
    squares = _names(_hits(cli("search", "a shape", "--orientation", "square", "-k", "50",
                               "--json")))  # fmt: skip
    assert len(squares) == 27
    heic = cli("search", "a shape", "--type", "heic")  # the file extension names the format
    assert heic.exit_code == 1 and "(type HEIF)" in heic.stderr


@BOTH_BACKENDS
def test_a_filter_that_matches_nothing_says_so(cli, dated):
    result = cli("search", "a shape", "--type", "gif", "--from", "2030")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: no image in the library matches the filters (taken 2030 to …, type GIF)"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (("--from", "June"), "--from 'June' is not a date; use YYYY, YYYY-MM or YYYY-MM-DD"),
        (("--orientation", "diagonal"), "orientation 'diagonal' is not one of landscape,"),
        (
            ("--type", "psd"),
            "unknown file type 'psd'; use one of 3gp, avi, avif, bmp, gif, heif, image, jpeg, m2ts,"
            " m4v, mkv, mov, mp4, mts, png, raw, tiff, video, webm, webp",
        ),
        (("--sort", "size"), "--sort 'size': use score or date"),
        (("--json", "--paths-only"), "--json and --paths-only cannot be used together"),
    ],
)
def test_bad_options_are_clear_errors(cli, photos, args, message):
    cli("index", str(photos))
    result = cli("search", "a shape", *args)
    assert result.exit_code == 1 and message in result.stderr, result.stderr


@BOTH_BACKENDS
def test_sort_by_date(cli, dated):
    hits = _hits(cli("search", "a red circle", "-k", "8", "--sort", "date", "--json"))
    dates = [h["taken_at"] for h in hits]
    assert dates == sorted(dates) and len(hits) == 8


@BOTH_BACKENDS
def test_dedup_collapses_identical_copies(cli, photos):
    for n in (1, 2):
        shutil.copy(photos / "red_circle_0.png", photos / f"copy{n}.png")
    cli("index", str(photos))
    names = {"red_circle_0.png", "copy1.png", "copy2.png"}
    plain = _names(_hits(cli("search", "a red circle", "-k", "5", "--json")))
    deduped = _hits(cli("search", "a red circle", "-k", "5", "--dedup", "--json"))
    assert len(names & set(plain)) == 3
    kept = [h for h in deduped if Path(h["path"]).name in names]
    assert len(kept) == 1 and len(deduped) == 5
    assert {Path(p).name for p in kept[0]["duplicates"]} == names - {Path(kept[0]["path"]).name}
    table = cli("search", "a red circle", "-k", "5", "--dedup").stdout
    assert "(+2 near-identical)" in table


@BOTH_BACKENDS
def test_similar_takes_the_same_filters(cli, dated):
    hits = _hits(cli("similar", str(dated / "red_circle_0.png"), "--in", str(dated / "sub"),
                     "--json"))  # fmt: skip
    assert sorted(_names(hits)) == ["landscape.jpg", "portrait.png"]


def _hit(score: float) -> ImageHit:
    return ImageHit(id=int(score * 1000), path=f"{score}", score=score, width=1, height=1)


def test_relative_cutoffs():
    hits = [_hit(s) for s in (0.31, 0.30, 0.29, 0.21, 0.20, 0.19)]
    assert [h.score for h in cut_within(hits, 0.015)] == [0.31, 0.30]
    assert [h.score for h in cut_at_knee(hits)] == [0.31, 0.30, 0.29]
    assert cut_within([], 0.1) == []


def test_within_and_knee_from_the_cli(cli, photos):
    cli("index", str(photos))
    top = _hits(cli("search", "a red circle", "--within", "0", "--json"))
    assert len(top) == 1
    knee = _hits(cli("search", "a red circle", "-k", "27", "--knee", "--json"))
    assert 1 <= len(knee) < 27


@BOTH_BACKENDS
def test_duplicates_lists_groups_of_near_identical_images(cli, photos):
    shutil.copy(photos / "red_circle_0.png", photos / "copy.png")
    Image.open(photos / "green_square_1.png").resize((47, 47)).resize((48, 48)).save(
        photos / "resaved.png"
    )
    cli("index", str(photos))
    groups = _hits(cli("duplicates", "--threshold", "0.99", "--json"))
    names = [sorted(Path(p).name for p in g["paths"]) for g in groups]
    assert ["copy.png", "red_circle_0.png"] in names
    assert ["green_square_1.png", "resaved.png"] in names
    assert all(g["min_score"] >= 0.99 for g in groups)
    table = cli("duplicates", "--threshold", "0.99").stdout
    assert table.startswith("group 1: ") and "similarity ≥ " in table


def test_tag_gives_label_probabilities(cli, photos, tmp_path):
    cli("index", str(photos))
    result = cli(
        "tag", str(photos / "red_circle_0.png"), str(photos / "blue_triangle_2.png"),
        "--labels", "red circle,blue triangle,green square", "--template", "a {}", "--json",
    )  # fmt: skip
    rows = _hits(result)
    assert [r["labels"][0]["label"] for r in rows] == ["red circle", "blue triangle"]
    for row in rows:
        assert sum(label["probability"] for label in row["labels"]) == pytest.approx(1.0)
    (tmp_path / "labels.txt").write_text("red circle\nblue triangle\n")
    table = cli("tag", str(photos / "red_circle_0.png"), "--labels-file",
                str(tmp_path / "labels.txt"), "--template", "a {}").stdout  # fmt: skip
    assert table.startswith(f"{photos / 'red_circle_0.png'}: red circle ")
    top1 = cli("tag", str(photos / "red_circle_0.png"), "--labels", "red circle,blue triangle",
               "--top", "1", "--template", "a {}").stdout  # fmt: skip
    assert top1.count("%") == 1


def test_tag_without_a_library(tiny_model, photos, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mmsearch.cli import app

    monkeypatch.setenv("MMSEARCH_LIBRARY", str(tmp_path / "none-here"))
    result = CliRunner().invoke(
        app,
        ["tag", str(photos / "green_triangle_0.png"), "--labels", "green triangle,red square",
         "--template", "a {}", "--model", str(tiny_model), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["labels"][0]["label"] == "green triangle"
    assert not (tmp_path / "none-here").exists()  # nothing was created


@pytest.mark.parametrize(
    "args, message",
    [
        (("--labels", "cat"), "give at least two labels"),
        ((), "give the labels with either --labels or --labels-file"),
        (("--labels", "a,b", "--template", "a photo"), 'each --template needs a "{}"'),
    ],
)
def test_tag_bad_input(cli, photos, args, message):
    cli("index", str(photos))
    result = cli("tag", str(photos / "red_circle_0.png"), *args)
    assert result.exit_code == 1 and message in result.stderr, result.output


def test_repeated_query_needs_no_model(cli, photos):
    """A query asked before is answered from the library's query cache: no torch, no model."""
    import subprocess
    import sys

    cli("index", str(photos))
    first = _names(_hits(cli("search", "a red circle", "-k", "3", "--json")))
    code = (
        "import sys; from typer.testing import CliRunner; from mmsearch.cli import app; "
        f"r = CliRunner().invoke(app, ['search', 'a red circle', '-k', '3', '--json', "
        f"'--library', {str(cli.library)!r}]); "
        "print(r.exit_code, 'torch' in sys.modules, r.stdout.replace(chr(10), ' '))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    exit_code, torch_loaded, hits = out.split(" ", 2)
    assert (exit_code, torch_loaded) == ("0", "False"), out
    assert _names(json.loads(hits)) == first


def test_damaged_query_cache_is_found_and_cleared(cli, photos):
    import sqlite3

    cli("index", str(photos))
    cli("search", "a red circle")
    db = sqlite3.connect(cli.library / "library.db")
    db.execute("UPDATE query_cache SET embedding = x'00'")
    db.commit()
    db.close()
    result = cli("check")
    assert (
        result.exit_code == 1 and "problem [query_cache]: 1 cached query vectors" in result.stdout
    )
    repaired = cli("check", "--repair")
    assert repaired.exit_code == 0 and "cleared the query cache (1 queries" in repaired.stdout


def test_new_query_embeddings_are_saved_in_batches_and_on_close(library):
    """A warm library writes new query embeddings to the cache SAVE_EVERY at a time (a
    write per query would cost a transaction each), answers repeats from memory meanwhile, and
    saves the rest when it closes."""
    import sqlite3

    from mmsearch.storage.query_cache import SAVE_EVERY

    def cached() -> int:
        db = sqlite3.connect(library.library_dir / "library.db")
        try:
            return db.execute("SELECT count(*) FROM query_cache").fetchone()[0]
        finally:
            db.close()

    first = library.search_text("query 0", k=3)
    assert cached() == 0 and [h.id for h in library.search_text("query 0", k=3)] == [
        h.id for h in first
    ]
    for n in range(1, SAVE_EVERY):
        library.search_text(f"query {n}", k=3)
    assert cached() == SAVE_EVERY
    library.search_text("one more", k=3)
    assert cached() == SAVE_EVERY
    library.close()
    assert cached() == SAVE_EVERY + 1


def test_dedup_fills_k_after_folding_a_burst(tmp_path, tiny_model):
    """A burst of near-identical frames folds into one hit, and the search fetches on until it
    has the -k distinct hits asked for."""
    import numpy as np

    from mmsearch import open_library
    from mmsearch.records import ImageRecord
    from mmsearch.search.terms import Relevance

    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        dim = lib.encoder.dim
        rng = np.random.default_rng(0)
        burst = rng.normal(size=dim)
        vectors = [burst + rng.normal(scale=0.01, size=dim) for _ in range(30)]
        vectors += [burst * 0.3 + rng.normal(size=dim) for _ in range(6)]  # related, distinct
        vectors = np.array([v / np.linalg.norm(v) for v in vectors], np.float32)
        records = [ImageRecord(f"/gone/{i:02d}.jpg", 1, 1, 8, 8, "JPEG") for i in range(36)]
        lib.images.put_images(records, vectors)
        query = [QueryTerm(1.0, image="/gone/00.jpg")]  # gone from disk: its stored vector
        hits = lib.search(query, k=4, relevance=Relevance(dedup=0.95))
        assert len(hits) == 4
        assert len(hits[0].duplicates) == 28  # the rest of the burst, the query left out
        with pytest.raises(InputError, match="between 1 and 1000 results"):
            lib.search(query, k=1001)


def test_search_during_a_first_index_run_says_it_is_being_indexed(tmp_path, tiny_model):
    import subprocess
    import sys

    from mmsearch import EmptyLibraryError, open_library

    lib = open_library(tmp_path / "lib", model=str(tiny_model))
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'%d\\n' % os.getpid()); "
         "print('held', flush=True); time.sleep(60)",
         str(tmp_path / "lib" / "write.lock")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(EmptyLibraryError, match=f"being written by .* \\(pid {holder.pid}\\)"):
            lib.search_text("a red circle")
    finally:
        holder.kill()
        holder.communicate()  # reaps it and closes its pipe
    with pytest.raises(EmptyLibraryError, match="index some images first"):
        lib.search_text("a red circle")
    lib.close()


def test_the_table_marks_file_dates(cli, photos):
    """Drawn shapes have no EXIF: their date is the file's, and the table says so."""
    cli("index", str(photos))
    result = cli("search", "a red circle", "-k", "2")
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    assert len(rows) == 2 and rows[0].split()[2].endswith("*")
    too_many = cli("search", "a red circle", "-k", "1001")
    assert too_many.exit_code == 2 and "less than or equal to 1000" in too_many.output
