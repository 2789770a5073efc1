"""``mmsearch check``: libraries damaged on purpose are found out, and ``--repair`` mends them."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from mmsearch.index.faiss_index import FaissIndex
from tests.conftest import BOTH_BACKENDS
from tests.helpers.library_sql import library_sql


@pytest.fixture
def indexed(cli, photos, tmp_path):
    assert cli("index", str(photos)).exit_code == 0
    captions = tmp_path / "captions.txt"
    captions.write_text("a red circle\na blue square\na green triangle\n")
    assert cli("add-texts", str(captions)).exit_code == 0
    return cli.library


def _check(cli, *args):
    result = cli("check", *args)
    return result.exit_code, result.stdout


def _repairs(cli, expected_problem: str) -> None:
    code, out = _check(cli)
    assert code == 1 and expected_problem in out, out
    assert "[mmsearch check --repair fixes this]" in out
    code, out = _check(cli, "--repair")
    assert code == 0 and "repaired: " in out and "ok: library" in out, out
    assert _check(cli)[0] == 0


@BOTH_BACKENDS
def test_a_sound_library_passes(cli, indexed):
    code, out = _check(cli)
    assert code == 0
    assert out.strip() == (
        f"ok: library {indexed} is consistent (27 images, 3 texts; database, model, vectors "
        "and indexes checked)"
    )
    report = json.loads(cli("check", "--json").stdout)
    assert report == {"library": str(indexed), "ok": True, "repaired": [], "problems": []}


def test_deleted_index_file(cli, indexed):
    (indexed / "images.faiss").unlink()
    _repairs(cli, f"problem [images.faiss]: {indexed / 'images.faiss'} is missing")


@pytest.mark.parametrize("damage", [lambda b: b[:-100], lambda b: b"garbage"])
def test_truncated_or_garbage_index_file(cli, indexed, damage):
    path = indexed / "texts.faiss"
    path.write_bytes(damage(path.read_bytes()))
    _repairs(cli, f"problem [texts.faiss]: {path} is truncated or not an mmsearch index")


def test_index_from_an_older_state(cli, indexed, photos):
    old = (indexed / "images.faiss").read_bytes()
    (photos / "red_circle_0.png").unlink()
    assert cli("index", str(photos)).exit_code == 0
    (indexed / "images.faiss").write_bytes(old)
    _repairs(cli, "is from an older state of the library")


def test_index_that_disagrees_with_the_database(cli, indexed):
    path = indexed / "images.faiss"
    index = FaissIndex.load(path)
    ids, vectors = index.items()
    index.remove(ids[:2])
    index.add(np.array([999]), vectors[:1])
    index.save(path)  # the same generation stamp: only the contents give it away
    code, out = _check(cli)
    assert code == 1
    assert "2 stored items are missing from" in out
    assert "1 ids in" in out and "have no item in the database (ids 999)" in out
    _repairs(cli, "missing from")


@BOTH_BACKENDS
def test_image_rows_without_usable_vectors(cli, indexed, photos):
    library_sql(indexed, "UPDATE images SET embedding = :v WHERE id = 1", v=b"")
    nan = np.full(32, np.nan, "f4").tobytes()
    library_sql(indexed, "UPDATE images SET embedding = :v WHERE id = 2", v=nan)
    code, out = _check(cli)
    assert code == 1 and "problem [images]: 2 stored image vectors are damaged" in out
    assert "ids 1, 2" in out
    code, out = _check(cli, "--repair")
    assert code == 0 and "removed 2 images with damaged vectors" in out, out
    summary = json.loads(cli("index", str(photos), "--json").stdout)
    assert (summary["added"], summary["unchanged"]) == (2, 25)


@BOTH_BACKENDS
def test_text_vectors_are_encoded_again(cli, indexed):
    threes = (np.ones(32, "f4") * 3).tobytes()
    library_sql(indexed, "UPDATE texts SET embedding = :v WHERE id = 3", v=threes)
    code, out = _check(cli)
    assert code == 1 and "problem [texts]: 1 stored text vectors are damaged" in out
    code, out = _check(cli, "--repair")
    assert code == 0 and "encoded 1 texts again from their text" in out
    hits = json.loads(
        cli(
            "captions",
            str(next(iter(sorted(indexed.parent.glob("photos/green_triangle_*"))))),
            "--json",
        ).stdout
    )
    assert hits[0]["text"] == "a green triangle"


@BOTH_BACKENDS
def test_skip_records_of_indexed_files(cli, indexed, photos):
    path = str(photos / "red_circle_0.png")
    library_sql(indexed, "INSERT INTO skipped_files VALUES (:p, 'corrupt', 'x', 1, 1)", p=path)
    _repairs(cli, "1 files are recorded both as indexed and as skipped")


def test_changed_model_weights_are_reported(cli, tiny_model, photos, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    library = tmp_path / "lib2"
    args = ("--model", str(model))
    assert cli("index", str(photos), *args, library_dir=library, model=False).exit_code == 0
    weights = model / "open_clip_pytorch_model.bin"
    state = torch.load(weights, weights_only=True)
    state["logit_scale"] = state["logit_scale"] + 1
    torch.save(state, weights)

    result = cli("check", library_dir=library)
    assert result.exit_code == 1
    assert "problem [model]: the weights of" in result.stdout
    assert "are not the ones the library was built with" in result.stdout
    assert "--repair" not in result.stdout  # nothing mmsearch can mend


def test_corrupt_database_is_reported_not_repaired(cli, indexed):
    db = indexed / "library.db"
    data = bytearray(db.read_bytes())
    page = 4096
    data[3 * page : 5 * page] = bytes(range(256)) * (2 * page // 256)
    db.write_bytes(bytes(data))
    for args in ((), ("--repair",)):
        result = cli("check", *args)
        assert result.exit_code == 1
        output = result.stdout + result.stderr
        assert "problem [database]: the database is damaged (" in output, output
        assert "malformed" in output and "sqlite3 library.db .recover" in output
    search = cli("search", "a red circle")
    assert search.exit_code == 1
    assert search.stderr.startswith("Error: the library database cannot be read or written (")
    assert search.stderr.rstrip().endswith("`mmsearch check` says what is wrong")


@BOTH_BACKENDS
def test_files_prove_their_stored_hashes(cli, indexed, photos):
    """``--files`` reads every file with a stored hash: one changed under an unchanged size and
    time (damage on disk) is found and, repaired, encoded again by the next index."""
    original = photos / "red_circle_0.png"
    shutil.copy(original, photos / "copy.png")  # a copy: both files are hashed
    assert cli("index", str(photos)).exit_code == 0
    code, out = _check(cli, "--files")
    assert code == 0, out
    stat = original.stat()
    data = bytearray(original.read_bytes())
    data[-20] ^= 0xFF  # one flipped byte, inside the PNG's last chunk
    original.write_bytes(bytes(data))
    os.utime(original, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the time kept
    assert _check(cli)[0] == 0  # nothing else reads the files
    code, out = _check(cli, "--files")
    assert code == 1 and "problem [files]: 1 files no longer hold the content stored" in out
    code, out = _check(cli, "--files", "--repair")
    assert code == 0 and "removed 1 images whose files changed" in out, out
    summary = json.loads(cli("index", str(photos), "--json").stdout)
    assert summary["added"] == 1
