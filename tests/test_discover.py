"""Finding image files: recursion, hidden files, excludes, links and loops."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from indexer.discover import discover
from mmsearch.errors import InputError


def _img(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4)).save(path)


def _names(found):
    return sorted(os.path.relpath(f.path, found.roots[0]) for f in found.files)


def test_recursive_with_extensions_case_insensitive(tmp_path):
    _img(tmp_path / "a.png")
    _img(tmp_path / "sub" / "deeper" / "b.PNG")
    (tmp_path / "notes.txt").write_text("x")
    assert _names(discover([tmp_path])) == ["a.png", "sub/deeper/b.PNG"]


def test_hidden_skipped_unless_asked(tmp_path):
    _img(tmp_path / ".hidden.png")
    _img(tmp_path / ".cache" / "c.png")
    _img(tmp_path / "v.png")
    assert _names(discover([tmp_path])) == ["v.png"]
    assert _names(discover([tmp_path], include_hidden=True)) == [
        ".cache/c.png",
        ".hidden.png",
        "v.png",
    ]


def test_exclude_globs(tmp_path):
    _img(tmp_path / "keep.png")
    _img(tmp_path / "raw" / "r.png")
    _img(tmp_path / "x" / "thumb_1.png")
    found = discover([tmp_path], exclude=["raw", "thumb_*"])
    assert _names(found) == ["keep.png"]


def test_symlink_loop_is_walked_once(tmp_path):
    _img(tmp_path / "a" / "p.png")
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    found = discover([tmp_path])
    assert _names(found) == ["a/p.png"]


def test_dangling_link_is_reported(tmp_path):
    _img(tmp_path / "ok.png")
    os.symlink(tmp_path / "missing.png", tmp_path / "dangling.png")
    found = discover([tmp_path])
    assert _names(found) == ["ok.png"]
    assert [(p, r) for p, r, _ in found.problems] == [
        (str(tmp_path / "dangling.png"), "unreadable")
    ]


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(InputError, match="path not found"):
        discover([tmp_path / "nope"])


def test_a_file_that_is_not_an_image(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="is not a file mmsearch indexes"):
        discover([tmp_path / "notes.txt"])


def test_non_utf8_file_name_is_reported(tmp_path):
    name = os.fsdecode(b"caf\xe9.png")
    _img(tmp_path / name)
    found = discover([tmp_path])
    assert found.files == []
    assert [r for _, r, _ in found.problems] == ["bad-filename"]
