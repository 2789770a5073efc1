"""`mmsearch migrate`: a library copied to another database holds and answers what the source
does, the source is unchanged, an interrupted copy carries on, and a wrong target is refused.
SQLite to SQLite here; to PostgreSQL and back in test_postgres.py."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mmsearch import open_library
from mmsearch.errors import LibraryError
from mmsearch.migration import UNFINISHED, migrate
from mmsearch.storage.engine import get_setting
from mmsearch.storage.schema import CachedQuery, ImageRow, TextRow
from tests.helpers import shapes
from tests.helpers.library_state import held


def build_source(cli, photos: Path, tmp_path: Path) -> None:
    """A library with every kind of row: images and their words, a skip record, a caption
    collection and cached queries."""
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a picture")
    assert cli("index", str(photos)).exit_code == 0
    captions = tmp_path / "shapes.txt"
    lines = [shapes.caption(c, s) for c in shapes.COLOURS for s in shapes.SHAPES]
    captions.write_text("\n".join(lines) + "\n")
    assert cli("add-texts", str(captions)).exit_code == 0
    assert cli("search", "a red circle").exit_code == 0


def contents(library_dir: Path) -> dict:
    """Everything a library holds, as comparable values."""
    state = held(library_dir)
    with open_library(library_dir, create=False) as lib, Session(lib.engine) as session:
        texts = session.execute(select(TextRow.id, TextRow.text, TextRow.embedding)).all()
        queries = session.execute(select(CachedQuery.text, CachedQuery.embedding)).all()
        model = get_setting(session, "model")
    return {
        "images": {p: (h, v.tobytes()) for p, (h, v) in state["images"].items()},
        "skipped": state["skipped"],
        "texts": sorted(texts),
        "queries": sorted(queries),
        "model": model,
    }


def answers(cli, library_dir: Path, photos: Path) -> dict:
    def run(*args):
        result = cli(*args, library_dir=library_dir)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    circle = str(photos / "red_circle_0.png")
    return {
        "search": [h["path"] for h in run("search", "a blue square", "-k", "5", "--json")],
        "captions": [h["text"] for h in run("captions", circle, "--json")],
        "keyword": {h["path"] for h in run("search", "triangle", "--mode", "keyword", "--json")},
    }


def test_a_migrated_library_holds_and_answers_what_the_source_does(cli, photos, tmp_path):
    build_source(cli, photos, tmp_path)
    before = contents(cli.library)
    target = tmp_path / "copy"
    result = cli("migrate", "--to", str(target), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ok"] and summary["problems"] == []
    assert summary["rows"]["images"] == len(before["images"]) == 27
    assert summary["rows"]["skipped_files"] == 1 and summary["rows"]["query_cache"] >= 1
    assert contents(target) == before
    assert contents(cli.library) == before  # the source is not changed
    assert answers(cli, target, photos) == answers(cli, cli.library, photos)
    assert cli("check", library_dir=target).exit_code == 0

    # The copy is a library like any other: indexing again finds nothing new, and a new
    # picture gets an id of its own.
    again = json.loads(cli("index", str(photos), "--json", library_dir=target).stdout)
    assert again["added"] == 0 and again["unchanged"] == 27
    shapes.draw("green", "circle", random.Random(99)).save(photos / "new_green_circle.png")
    added = json.loads(cli("index", str(photos), "--json", library_dir=target).stdout)
    assert added["added"] == 1
    assert len(contents(target)["images"]) == 28


def test_an_interrupted_migration_carries_on_when_run_again(cli, photos, tmp_path):
    build_source(cli, photos, tmp_path)
    before = contents(cli.library)
    batches = 0

    def interrupt_after_three(rows: int) -> None:
        nonlocal batches
        batches += 1
        if batches == 3:
            raise KeyboardInterrupt  # as Ctrl-C between two batches

    target = tmp_path / "copy"
    with (
        open_library(cli.library) as source,
        open_library(target) as copy,
        pytest.raises(KeyboardInterrupt),
    ):
        migrate(source, copy, batch_rows=5, progress=interrupt_after_three)
    with open_library(target) as copy, Session(copy.engine) as session:
        assert get_setting(session, UNFINISHED, "").startswith("sqlite:")
        assert session.execute(select(func.count()).select_from(ImageRow)).scalar_one() == 15

    # Another library may not be copied into the unfinished one.
    other = tmp_path / "other"
    with (
        open_library(other) as lib,
        open_library(target) as copy,
        pytest.raises(LibraryError, match="unfinished copy of another library"),
    ):
        migrate(lib, copy)

    result = cli("migrate", "--to", str(target), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["copied"]["images"] == 12  # only what the first run had not committed
    assert contents(target) == before
    with open_library(target) as copy, Session(copy.engine) as session:
        assert get_setting(session, UNFINISHED) is None


def test_a_target_that_holds_a_library_is_refused(cli, photos, tmp_path):
    build_source(cli, photos, tmp_path)
    other = tmp_path / "other"
    assert cli("index", str(photos / "red_circle_0.png"), library_dir=other).exit_code == 0
    refused = cli("migrate", "--to", str(other))
    assert refused.exit_code == 1
    assert "already holds a library" in refused.stderr
    assert len(contents(other)["images"]) == 1

    itself = cli("migrate", "--to", str(cli.library))
    assert itself.exit_code == 1 and "the source library itself" in itself.stderr

    no_folder = cli("migrate", "--to", "postgresql+psycopg://me@db.example/photos")
    assert no_folder.exit_code == 1 and "needs --to-library" in no_folder.stderr
