"""Incremental sync: only changed content is encoded; moves and duplicates reuse embeddings."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections import Counter

from indexer import index_paths
from mmsearch import open_library
from mmsearch.records import mtime_iso
from mmsearch.storage.schema import SCHEMA_VERSION
from tests.conftest import BOTH_BACKENDS
from tests.helpers import shapes


def _stored(library, path):
    return library.images.image_state()[str(path)]


@BOTH_BACKENDS
def test_moved_file_reuses_its_embedding(library, photos):
    """Renamed on the same disk, it is recognised by its inode: its row moves, id and all."""
    before = _stored(library, photos / "red_circle_0.png")
    (photos / "sub").mkdir()
    (photos / "red_circle_0.png").rename(photos / "sub" / "renamed.png")

    summary = index_paths(library, [photos], workers=0)

    assert (summary.moved, summary.added, summary.removed) == (1, 0, 0)
    after = _stored(library, photos / "sub" / "renamed.png")
    assert (after.id, after.content_hash) == (before.id, before.content_hash)
    names = [
        w.text for w in library.image_texts(photos / "sub" / "renamed.png") if w.kind == "name"
    ]
    assert names == ["photos sub renamed"]
    hits = library.search_text("a red circle", k=3)
    assert str(photos / "sub" / "renamed.png") in [h.path for h in hits]


def test_duplicates_are_encoded_once(tmp_path, tiny_model, photos):
    shutil.copy(photos / "blue_square_0.png", photos / "copy_a.png")
    shutil.copy(photos / "blue_square_0.png", photos / "copy_b.png")
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        # batch_size 4: copies land in the same batch and in later ones.
        summary = index_paths(lib, [photos], workers=0, batch_size=4)
        assert (summary.added, summary.reused) == (29, 2)
        shutil.copy(photos / "blue_square_0.png", photos / "copy_c.png")
        again = index_paths(lib, [photos], workers=0)
        assert (again.added, again.reused, again.unchanged) == (1, 1, 29)
        state = lib.images.image_state()
        hashes = {state[str(photos / n)].content_hash for n in ("copy_a.png", "copy_c.png")}
        assert hashes == {state[str(photos / "blue_square_0.png")].content_hash}


@BOTH_BACKENDS
def test_touched_file_is_not_encoded_again(library, photos):
    path = photos / "green_square_1.png"
    os.utime(path, ns=(10**18, 10**18))
    summary = index_paths(library, [photos], workers=0)
    assert (summary.added, summary.updated, summary.unchanged) == (0, 0, 27)
    assert _stored(library, path).mtime_ns == 10**18  # next run compares against the new time


@BOTH_BACKENDS
def test_changed_content_is_encoded(library, photos):
    path = photos / "blue_circle_1.png"
    before = _stored(library, path)
    shapes.draw("green", "triangle", __import__("random").Random(4)).save(path)
    summary = index_paths(library, [photos], workers=0)
    assert (summary.updated, summary.reused) == (1, 0)
    after = _stored(library, path)
    assert after.content_hash is None or after.content_hash != before.content_hash
    hits = library.search_text("a green triangle", k=4)
    assert str(path) in [h.path for h in hits]


def test_copies_with_worker_processes(library, photos):
    """Copies are recognised by their full hashes, computed in spawned decoder processes: the
    copies', and the never hashed originals' (hashed once a file of their size came)."""
    shutil.copytree(photos, photos.parent / "copies")
    summary = index_paths(library, [photos.parent], workers=2)
    assert (summary.moved, summary.added, summary.reused, summary.removed) == (0, 27, 27, 0)
    state = library.images.image_state()
    for original in photos.glob("*.png"):
        copy = state[str(photos.parent / "copies" / original.name)]
        assert copy.content_hash == state[str(original)].content_hash is not None


def test_a_file_moved_to_another_disk_is_encoded_again_unless_it_was_hashed(library, photos):
    """Copied to another disk, then deleted (a new inode): a file the first scan hashed (its
    size was shared) is recognised, one it did not hash cannot be, and is encoded again rather
    than matched on a guess."""
    state = library.images.image_state()
    sizes = Counter(s.size for s in state.values())
    shared = next(p for p, s in state.items() if sizes[s.size] > 1)
    alone = next(p for p, s in state.items() if sizes[s.size] == 1)
    assert state[shared].content_hash is not None and state[alone].content_hash is None
    (photos / "elsewhere").mkdir()
    for path in (shared, alone):
        shutil.copy2(path, photos / "elsewhere" / os.path.basename(path))
        os.unlink(path)
    summary = index_paths(library, [photos], workers=0)
    assert (summary.moved, summary.added, summary.reused, summary.removed) == (0, 2, 1, 2)


def test_twin_gone_during_run_is_decoded_after_all(library, photos, monkeypatch):
    """A file whose twin was known when the run started but left the library before its batch
    was stored (the twin was changed into a broken file, say) is decoded after all."""
    shutil.copy(photos / "red_square_2.png", photos / "twin.png")
    known_at_start = library.images.known_content()
    library.images.remove_images([str(photos / "red_square_2.png")])
    monkeypatch.setattr(library.images, "known_content", lambda: known_at_start)
    summary = index_paths(library, [photos / "twin.png"], workers=0)
    assert (summary.added, summary.reused, summary.skipped_total) == (1, 0, 0)
    assert str(photos / "twin.png") in [h.path for h in library.search_text("a red square", k=3)]


def test_schema_1_library_is_upgraded(tmp_path, tiny_model, photos):
    """Libraries written before content hashes existed open, gain the column, and keep working."""
    lib_dir = tmp_path / "old"
    with open_library(lib_dir, model=str(tiny_model)) as lib:
        index_paths(lib, [photos], workers=0)
    db = sqlite3.connect(lib_dir / "library.db")
    for column in ("content_hash", "taken_at"):
        db.execute(f"DROP INDEX ix_images_{column}")
    for column in ("content_hash", "taken_at", "taken_from"):
        db.execute(f"ALTER TABLE images DROP COLUMN {column}")
    db.execute("UPDATE settings SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.close()

    with open_library(lib_dir, model=str(tiny_model)) as lib:
        assert lib.search_text("a red circle", k=1)[0].path.endswith(".png")
        assert all(s.content_hash is None for s in lib.images.image_state().values())
        hit = lib.search_text("a red circle", k=1)[0]
        stat = os.stat(hit.path)
        assert hit.taken_at == mtime_iso(stat.st_mtime_ns)  # dated by modification time
        shutil.copy(photos / "red_circle_0.png", photos / "copy.png")
        summary = index_paths(lib, [photos], workers=0)
        assert (summary.added, summary.unchanged) == (1, 27)
    db = sqlite3.connect(lib_dir / "library.db")
    [(version,)] = db.execute("SELECT value FROM settings WHERE key = 'schema_version'")
    assert int(version) == SCHEMA_VERSION


def test_stored_state_under_a_folder_is_that_folder_only(tmp_path, tiny_model):
    """Only what lies at or below the paths asked for: not a sibling sharing the prefix, and
    characters that are wildcards to SQL LIKE are plain characters."""
    import numpy as np

    from mmsearch.records import ImageRecord

    root = str(tmp_path)
    paths = [
        f"{root}/photos/a.jpg",
        f"{root}/photos/deep/b.jpg",
        f"{root}/photos2/c.jpg",  # a sibling whose name extends "photos"
        f"{root}/photos.jpg",
        f"{root}/100%_x/d.jpg",
        f"{root}/100a_x/e.jpg",
    ]
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        records = [ImageRecord(p, 1, 1, 8, 8, "JPEG") for p in paths]
        lib.images.put_images(records, np.eye(len(paths), lib.encoder.dim, dtype=np.float32))
        assert sorted(lib.images.image_state(under=[f"{root}/photos"])) == paths[:2]
        assert sorted(lib.images.image_state(under=[f"{root}/photos/deep/b.jpg"])) == paths[1:2]
        assert sorted(lib.images.image_state(under=[f"{root}/100%_x"])) == paths[4:5]
        both = lib.images.image_state(under=[f"{root}/photos2", f"{root}/photos.jpg"])
        assert sorted(both) == sorted(paths[2:4])
        assert lib.images.image_state(under=[]) == {}
        assert sorted(lib.images.image_state()) == sorted(paths)


def test_known_content_matches_on_the_first_64_bits():
    from mmsearch.imaging.fingerprint import KnownContent

    known = KnownContent(["00112233445566778899aabbccddeeff", "ffeeddccbbaa99887766554433221100"])
    assert len(known) == 2
    assert "00112233445566778899aabbccddeeff" in known
    # A different content sharing the first 64 bits matches too: the indexer then compares the
    # full hash with the library's (test_twin_gone_during_run_is_decoded_after_all).
    assert "0011223344556677ffffffffffffffff" in known
    assert "0011223344556678ffffffffffffffff" not in known
    assert None not in known and "ab" * 16 not in KnownContent()


def test_a_whole_folder_moved_at_once_stays_within_sqlites_bound_values(
    library, photos, monkeypatch
):
    """SQLite refuses statements with more bound values than its limit (999 in SQLite before
    3.32): the paths, inodes, sizes and hashes of a large move and copy are bound a slice at a
    time."""
    from sqlalchemy import event

    import mmsearch.storage.engine

    for picture in sorted(photos.glob("*.png"))[:13]:
        shutil.copy(picture, photos / f"copy_{picture.name}")
    index_paths(library, [photos], workers=0)  # 40 images
    monkeypatch.setattr(mmsearch.storage.engine, "MAX_BOUND_VALUES", 5)
    event.listen(
        library.engine,
        "connect",
        # Above one image row's 28 columns, below the 40 paths that move.
        lambda connection, _: connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32),
    )
    library.engine.dispose()  # new connections get the limit
    (photos / "moved").mkdir()
    (photos / "copies").mkdir()
    for picture in list(photos.glob("*.png")):
        shutil.copy2(picture, photos / "copies" / picture.name)  # hashed with the originals
        picture.rename(photos / "moved" / picture.name)  # recognised by their inodes

    summary = index_paths(library, [photos], workers=0)

    assert (summary.moved, summary.added, summary.reused, summary.removed) == (40, 40, 40, 0)
    assert {path.split("/")[-2] for path in library.images.image_state()} == {"moved", "copies"}


@BOTH_BACKENDS
def test_a_folder_that_emptied_is_refused_not_wiped(cli, photos):
    """An unmounted network share leaves an empty mount point: indexing it again must not drop
    the 27 embeddings (hours of encoding on a real library)."""
    assert cli("index", str(photos)).exit_code == 0
    away = photos.parent / "away"
    photos.rename(away)
    photos.mkdir()  # the bare mount point

    result = cli("index", str(photos))

    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: {photos} holds no image files now, but the library holds 27 images from it; "
        "nothing was changed. If it is on a disk or network share that is not mounted, mount it "
        f"and run again; if the photos are gone for good, `mmsearch forget {photos}` removes "
        "them from the library"
    )
    photos.rmdir()
    result = cli("index", str(photos))  # the mount point itself gone
    assert result.exit_code == 1 and f"{photos} is not found, but the library holds 27" in (
        result.stderr
    )
    away.rename(photos)  # mounted again: nothing to do
    assert json.loads(cli("index", str(photos), "--json").stdout)["unchanged"] == 27


@BOTH_BACKENDS
def test_forget_removes_a_folders_images_even_when_it_is_gone(cli, photos):
    assert cli("index", str(photos)).exit_code == 0
    (photos / "sub").mkdir()
    (photos / "red_circle_0.png").rename(photos / "sub" / "red.png")
    assert cli("index", str(photos)).exit_code == 0
    shutil.rmtree(photos / "sub")

    result = cli("forget", str(photos / "sub"), "--json")

    assert result.exit_code == 0 and json.loads(result.stdout) == {"removed": 1}
    assert json.loads(cli("info", "--json").stdout)["images"] == 26
    again = cli("forget", str(photos / "sub"))
    assert again.exit_code == 1
    assert (
        again.stderr.strip() == f"Error: the library holds no images at or under {photos / 'sub'}"
    )
    assert cli("forget", str(photos)).stdout.strip() == (
        "removed 26 images from the library (the files are untouched)"
    )
    assert len(list(photos.glob("*.png"))) == 26


def test_a_folder_that_cannot_be_listed_keeps_its_images(library, photos, monkeypatch):
    """A network hiccup or a permission change on one subfolder: its images are unknown, not
    gone. (The error is injected: the tests may run as root, which reads any folder.)"""
    (photos / "sub").mkdir()
    for picture in list(photos.glob("blue_*.png")):
        picture.rename(photos / "sub" / picture.name)
    index_paths(library, [photos], workers=0)
    in_sub = {p for p in library.images.image_state() if "/sub/" in p}
    assert in_sub
    listing = os.scandir

    def scandir(path="."):
        if not isinstance(path, int) and os.fspath(path).endswith("/sub"):  # not rmtree's fds
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", scandir)
    summary = index_paths(library, [photos], workers=0)

    assert summary.removed == 0 and summary.skipped == {"unreadable": 1}
    assert in_sub <= set(library.images.image_state())


def test_new_libraries_hash_with_blake3(library, photos):
    import blake3

    shutil.copy(photos / "red_circle_0.png", photos / "copy.png")  # a copy: both are hashed
    index_paths(library, [photos], workers=0)
    content = (photos / "red_circle_0.png").read_bytes()
    for name in ("red_circle_0.png", "copy.png"):
        assert _stored(library, photos / name).content_hash == blake3.blake3(content).hexdigest(16)


def test_a_library_made_before_blake3_keeps_blake2b_and_still_recognises_moves(
    tmp_path, tiny_model, photos
):
    """Its rows hold BLAKE2b hashes; hashing new files with anything else would never match."""
    import hashlib

    from sqlalchemy import delete
    from sqlalchemy.orm import Session

    from mmsearch.storage.schema import Setting

    with (
        open_library(tmp_path / "lib", model=str(tiny_model)) as lib,
        Session(lib.engine) as session,
    ):  # as the library was before this setting existed
        session.execute(delete(Setting).where(Setting.key == "content_hash"))
        session.commit()
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        shutil.copy(photos / "red_circle_0.png", photos / "copy.png")  # both are hashed
        summary = index_paths(lib, [photos], workers=0)
        assert (summary.added, summary.reused) == (28, 1)
        content = (photos / "red_circle_0.png").read_bytes()
        assert _stored(lib, photos / "red_circle_0.png").content_hash == (
            hashlib.blake2b(content, digest_size=16).hexdigest()
        )
        shutil.copy(photos / "red_circle_0.png", photos / "another.png")
        summary = index_paths(lib, [photos])  # worker processes hash too
        assert (summary.added, summary.reused) == (1, 1)


def test_library_folder_inside_an_indexed_folder_is_never_indexed(cli, photos):
    """`serve` writes thumbnails into the library folder; with the library inside the photo
    folder the next index run must not take them for photos."""
    library = photos / "my-library"
    thumbnails = library / "thumbnails"
    thumbnails.mkdir(parents=True)
    shutil.copy(photos / "red_circle_0.png", thumbnails / "1-256.png")
    result = cli("index", str(photos), library_dir=library)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("added 27,")
    assert f"the library folder {library} lies inside an indexed folder" in result.stdout
    found = cli("search", "a red circle", "-k", "30", "--paths-only", library_dir=library)
    assert not any("thumbnails" in p for p in found.stdout.splitlines())


def test_a_library_from_before_inodes_learns_them_and_then_recognises_renames(library, photos):
    db = sqlite3.connect(library.library_dir / "library.db")
    db.execute("UPDATE images SET inode = NULL")  # as schema 5 had none
    db.commit()
    db.close()
    assert index_paths(library, [photos], workers=0).unchanged == 27  # inodes learnt, no read
    (photos / "blue_circle_1.png").rename(photos / "renamed.png")
    summary = index_paths(library, [photos], workers=0)
    assert (summary.moved, summary.added, summary.removed) == (1, 0, 0)
