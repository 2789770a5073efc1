"""A library copied to another database (SQLite to PostgreSQL or back): resumable, verified.

What is copied is the source of truth: every row of every table (images with their vectors,
moments, words, skip records, collections and their texts, the query cache) with its id, and
the settings (model identity, indexed folders), the target's own ``vector_store`` aside. What is
derived is made by the target itself: SQLite's keyword index by its triggers as the words
arrive, pgvector's vectors in the same transactions as their images (the index that suits
their number built over them at the end), FAISS files on first use.

Rows go in id order, a transaction of ``batch_rows`` at a time, so an interrupted copy keeps
what it committed and the next run carries on after the last id the target holds. The target
says that it is an unfinished copy (the setting :data:`UNFINISHED`, naming its source) until the
last step, which copies the settings, moves every index generation past any the target saw (so
an index saved from a half-copied library is never taken as current) and removes the mark, in
one transaction. Then the row counts are compared and the target is checked.

The source is only read, under its writer lock, so that no index run changes it meanwhile.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

import numpy as np
from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from mmsearch.errors import LibraryError
from mmsearch.library import Library
from mmsearch.storage.engine import get_setting, set_setting
from mmsearch.storage.schema import (
    CachedQuery,
    Collection,
    ImageRow,
    ImageText,
    MomentRow,
    Setting,
    SkippedFile,
    TextRow,
)

UNFINISHED = "migrating_from"
# Settings that describe the database they are in, not the library: never copied.
_OWN_SETTINGS = {"vector_store", "pgvector.trained_on", UNFINISHED}
# Tables whose rows have integer ids, parents before children (foreign keys).
_BY_ID = (ImageRow, MomentRow, ImageText, Collection, TextRow)
# Tables keyed by text, small (skips, at most 10,000 cached queries): copied by difference,
# since two databases may order text differently.
_BY_KEY = ((SkippedFile, "path"), (CachedQuery, "text"))


@dataclasses.dataclass
class MigrationSummary:
    """What a migration copied (this run), what the target holds per table, and what
    ``check`` found in it (empty: consistent)."""

    copied: dict[str, int]
    rows: dict[str, int]
    problems: list[str]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def migrate(
    source: Library,
    target: Library,
    *,
    batch_rows: int = 2_000,
    progress: Callable[[int], None] = lambda rows: None,
) -> MigrationSummary:
    """Copy ``source`` into ``target`` (a new library, or an unfinished copy of this source).

    ``progress`` is called with the rows of each committed batch.

    Raises:
        LibraryError: the target holds another library, or is the source itself.
    """
    if target.read_only:
        raise LibraryError(f"cannot migrate into {target.library_dir}: it is read-only")
    origin = _describe(source)
    if origin == _describe(target):
        raise LibraryError("the target is the source library itself; choose another --to")
    with _source_lock(source), target.writing():
        _claim(target, origin)
        copied = {}
        for table in _BY_ID:
            copied[table.__tablename__] = _copy_by_id(source, target, table, batch_rows, progress)
        for table, key in _BY_KEY:
            copied[table.__tablename__] = _copy_by_key(
                source, target, table, key, batch_rows, progress
            )
        _finish(source, target)
    return _verified(target.library_dir, copied, expected=_row_counts(source))


def _verified(library_dir, copied: dict[str, int], expected: dict[str, int]) -> MigrationSummary:
    """The finished copy, opened afresh (with the model its settings now name), its derived
    index files built so that it is ready to search, its rows counted and checked."""
    from mmsearch.checking import check_library
    from mmsearch.index.derived import MODALITIES
    from mmsearch.opening import open_library

    with open_library(library_dir, create=False) as copy:
        for modality in MODALITIES:
            if not copy.index_in_database(modality):
                copy.rebuild_index(modality)
        rows = _row_counts(copy)
        problems = [
            f"{table}: {rows[table]} rows copied of {expected[table]}"
            for table in expected
            if rows[table] != expected[table]
        ]
        problems += [p.message for p in check_library(copy)]
    return MigrationSummary(copied=copied, rows=rows, problems=problems)


def pending_rows(source: Library, target: Library) -> int:
    """How many rows a migration of ``source`` into ``target`` has left to copy (for a
    progress bar's total)."""
    have, want = _row_counts(target), _row_counts(source)
    return sum(max(want[t] - have.get(t, 0), 0) for t in want)


def _describe(library: Library) -> str:
    url = library.engine.url
    if url.get_backend_name() == "sqlite":
        return f"sqlite:{library.library_dir.resolve()}"
    return url.render_as_string(hide_password=True)


def _source_lock(source: Library):
    return contextlib.nullcontext() if source.read_only else source.writing()


def _claim(target: Library, origin: str) -> None:
    """Mark the target as a copy of ``origin`` in progress, or refuse it."""
    with Session(target.engine) as session:
        mark = get_setting(session, UNFINISHED)
        holds = any(
            session.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (*_BY_ID, SkippedFile)
        )
    if mark is not None and mark != origin:
        raise LibraryError(
            f"{target.library_dir} holds an unfinished copy of another library ({mark}); "
            "finish that one, or migrate into a new library"
        )
    if mark is None and holds:
        raise LibraryError(
            f"{target.library_dir} already holds a library (a finished copy?); migrate into a "
            "new, empty one"
        )
    with target.transaction() as session:
        set_setting(session, UNFINISHED, origin)


def _copy_by_id(source, target, table, batch_rows, progress) -> int:
    """Copy ``table``'s rows after the last id the target holds; returns how many."""
    column = table.__table__.c.id
    with Session(target.engine) as session:
        last = session.execute(select(func.max(column))).scalar_one() or 0
    copied = 0
    in_database = table is ImageRow and target.index_in_database("images")
    with Session(source.engine) as reading:
        while True:
            rows = [
                dict(row._mapping)
                for row in reading.execute(
                    select(table.__table__).where(column > last).order_by(column).limit(batch_rows)
                )
            ]
            if not rows:
                break
            with target.transaction() as session:
                session.execute(insert(table.__table__), rows)
                if in_database:
                    _write_pgvector(session, rows)
            last = rows[-1]["id"]
            copied += len(rows)
            progress(len(rows))
    if target.engine.dialect.name == "postgresql":
        _advance_sequence(target, table.__tablename__)
    return copied


def _write_pgvector(session: Session, rows: list[dict]) -> None:
    from mmsearch.index import pgvector_index

    ids = [row["id"] for row in rows]
    vectors = np.stack([np.frombuffer(row["embedding"], np.float32) for row in rows])
    pgvector_index.write(session, ids, vectors, indexed=False)  # indexed at the end: _finish


def _advance_sequence(target: Library, table: str) -> None:
    """PostgreSQL's id sequence past the copied ids: rows inserted with their ids leave it
    behind, and the next index run's rows would collide with them."""
    with target.transaction() as session:
        session.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
            )
        )


def _copy_by_key(source, target, table, key: str, batch_rows, progress) -> int:
    column = getattr(table, key)
    with Session(target.engine) as session:
        have = set(session.execute(select(column)).scalars())
    copied = 0
    with Session(source.engine) as reading:
        result = reading.execute(select(table.__table__)).mappings()
        while chunk := result.fetchmany(batch_rows):
            rows = [dict(row) for row in chunk if row[key] not in have]
            if rows:
                with target.transaction() as session:
                    session.execute(insert(table.__table__), rows)
                copied += len(rows)
                progress(len(rows))
    return copied


def _finish(source: Library, target: Library) -> None:
    """The settings, the generations moved past any the target had, pgvector's index built over
    the loaded vectors (in one pass: several times faster than row by row), the mark removed."""
    from mmsearch.index import pgvector_layout

    with Session(source.engine) as session:
        settings = dict(session.execute(select(Setting.key, Setting.value)).all())
    with target.transaction() as session:
        theirs = dict(session.execute(select(Setting.key, Setting.value)).all())
        for key, value in settings.items():
            if key in _OWN_SETTINGS:
                continue
            if key.startswith("generation."):
                value = max(int(value), int(theirs.get(key) or 0)) + 1
            set_setting(session, key, value)
        if target.index_in_database("images"):
            pgvector_layout.build_index(session)
        session.execute(Setting.__table__.delete().where(Setting.key == UNFINISHED))


def _row_counts(library: Library) -> dict[str, int]:
    tables = (*_BY_ID, *(t for t, _ in _BY_KEY))
    with Session(library.engine) as session:
        return {
            t.__tablename__: session.execute(select(func.count()).select_from(t)).scalar_one()
            for t in tables
        }
