"""SQL run straight on a library's database, whichever backend holds it (SQLite or a
PostgreSQL server): what tests use to damage a library the way a disk, a crash or another
program would."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy

from mmsearch.storage.location import read_config, sqlite_url


def library_sql(library_dir: Path, statement: str, **params) -> None:
    """Run one statement (named ``:params``) on the library's database and commit it."""
    url = read_config(library_dir).get("db_url") or sqlite_url(library_dir)
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(statement), params)
    finally:
        engine.dispose()
