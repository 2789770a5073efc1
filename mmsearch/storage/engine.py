"""Opening the library database: engine set-up, schema creation and version checks."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import NoReturn, TypeVar

from sqlalchemy import bindparam, create_engine, event, inspect, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session

from mmsearch.errors import DatabaseError, LibraryError
from mmsearch.imaging.fingerprint import CONTENT_HASH
from mmsearch.records import mtime_iso
from mmsearch.storage.schema import (
    FTS_DDL,
    SCHEMA_VERSION,
    Base,
    CachedQuery,
    ImageRow,
    ImageText,
    MomentRow,
    Setting,
)
from mmsearch.words import name_words

T = TypeVar("T")

# How long a write waits for another process's transaction (30 s).
BUSY_TIMEOUT_PRAGMA = "PRAGMA busy_timeout = 30000"

# SQLite refuses a statement with more bound values than its limit: 999 before 3.32, 32,766
# since then by default (250,000 in Debian's build). Long lists of paths or ids (a folder of
# 80,000 photos gone at once) are bound this many at a time.
MAX_BOUND_VALUES = 900


def open_engine(url: str, *, create: bool) -> Engine:
    """An engine on ``url`` with the schema in place (created when ``create``).

    Raises:
        LibraryError: the URL is malformed, the database cannot be opened, or it was written by
            a newer mmsearch.
    """
    shown = url
    try:
        shown = make_url(url).render_as_string(hide_password=True)  # messages never show it
        server = not url.startswith("sqlite")
        # A server that does not answer is an error within seconds, never a hang.
        engine = create_engine(url, connect_args={"connect_timeout": 10} if server else {})
    except (ArgumentError, ImportError) as exc:
        raise LibraryError(f"cannot use database URL {shown!r}: {exc}") from exc
    event.listen(engine, "handle_error", _translate_error)
    read_only = engine.dialect.name == "sqlite" and "mode=ro" in url  # see location.sqlite_url
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _read_only_pragmas if read_only else _sqlite_pragmas)
    try:
        if create:
            Base.metadata.create_all(engine)
            with engine.begin() as connection:
                _create_keyword_index(connection)
        elif not inspect(engine).has_table(Setting.__tablename__):
            raise LibraryError(
                f"{shown} holds no mmsearch library; create one there with "
                "`mmsearch index PATH --db-url URL`"
            )
        with Session(engine) as session:
            version = session.get(Setting, "schema_version")
            if version is None and create:
                session.add(Setting(key="schema_version", value=SCHEMA_VERSION))
                session.add(Setting(key="content_hash", value=CONTENT_HASH))
                session.commit()
            elif version is None:
                raise LibraryError(f"{shown} is not an mmsearch library (no schema version)")
            elif int(version.value) > SCHEMA_VERSION:
                raise LibraryError(
                    f"{shown} was written by a newer mmsearch (schema {version.value}, this one "
                    f"reads {SCHEMA_VERSION}); upgrade mmsearch"
                )
            elif int(version.value) < SCHEMA_VERSION:
                if read_only:
                    raise LibraryError(
                        f"{shown} was written by an older mmsearch (schema {version.value}) and "
                        "must be upgraded, which a read-only library cannot be; open it once "
                        "where it can be written"
                    )
                _upgrade(engine, int(version.value))
    except DatabaseError as exc:
        hint = (
            "is the server running and reachable, and the user, password (PGPASSWORD or "
            "~/.pgpass) and database right?"
            if server
            else "is the disk full, the folder read-only, or the file damaged? `mmsearch "
            "check` says more"
        )
        engine.dispose()
        raise LibraryError(f"cannot open library database {shown}: {exc.orig} ({hint})") from exc
    except LibraryError:
        engine.dispose()  # a server's connection is closed, not left to the garbage collector
        raise
    return engine


# A setting: every stored image's header is to be read again (what a schema added to read).
HEADERS_OUTDATED = "headers_outdated"

# Columns added since schema 1, by the version that added them (constant DDL, no user data).
_ADDED_COLUMNS = {
    2: {"content_hash": "ALTER TABLE images ADD COLUMN content_hash VARCHAR(32)"},
    3: {
        "taken_at": "ALTER TABLE images ADD COLUMN taken_at VARCHAR(19)",
        "taken_from": "ALTER TABLE images ADD COLUMN taken_from VARCHAR(8)",
    },
    5: {
        **{
            name: f"ALTER TABLE images ADD COLUMN {name} VARCHAR(120)"
            for name in ("camera_make", "camera_model", "lens")
        },
        **{
            name: f"ALTER TABLE images ADD COLUMN {name} FLOAT"
            for name in ("focal_mm", "focal_35mm", "aperture", "exposure_s")
        },
        "iso": "ALTER TABLE images ADD COLUMN iso INTEGER",
    },
    6: {
        **{
            name: f"ALTER TABLE images ADD COLUMN {name} FLOAT"
            for name in ("latitude", "longitude")
        },
        **{
            name: f"ALTER TABLE images ADD COLUMN {name} VARCHAR(120)"
            for name in ("place_city", "place_region", "place_country")
        },
        "country_code": "ALTER TABLE images ADD COLUMN country_code VARCHAR(2)",
        "rating": "ALTER TABLE images ADD COLUMN rating INTEGER",
        "sidecar_mtime_ns": "ALTER TABLE images ADD COLUMN sidecar_mtime_ns BIGINT",
        "inode": "ALTER TABLE images ADD COLUMN inode BIGINT",
    },
    7: {name: f"ALTER TABLE images ADD COLUMN {name} FLOAT" for name in ("duration_s", "poster_t")},
}


def _upgrade(engine: Engine, version: int) -> None:
    """Bring a library written by an older mmsearch up to the current schema, in one transaction."""
    with engine.begin() as connection:
        columns = {c["name"] for c in inspect(connection).get_columns("images")}
        for _, statements in sorted(_ADDED_COLUMNS.items()):
            for name, ddl in statements.items():
                if name not in columns:  # whatever the version says: what is missing
                    connection.execute(text(ddl))
        if version < 3:
            # Dates from the modification time; EXIF dates come as files are indexed again.
            images = ImageRow.__table__
            rows = connection.execute(select(images.c.id, images.c.mtime_ns)).all()
            if rows:
                connection.execute(
                    images.update()
                    .where(images.c.id == bindparam("row_id"))
                    .values(taken_at=bindparam("taken_at"), taken_from="mtime"),
                    [{"row_id": i, "taken_at": mtime_iso(m)} for i, m in rows],
                )
        for index in ImageRow.__table__.indexes:
            index.create(connection, checkfirst=True)
        CachedQuery.__table__.create(connection, checkfirst=True)  # schema 4
        MomentRow.__table__.create(connection, checkfirst=True)  # schema 7
        if version < 5:
            ImageText.__table__.create(connection, checkfirst=True)
            _create_keyword_index(connection)
            # File and folder names are known from the paths; embedded metadata comes as
            # files are indexed again (new and changed files).
            images = ImageRow.__table__
            rows = connection.execute(select(images.c.id, images.c.path)).all()
            words = ImageText.__table__
            connection.execute(words.delete().where(words.c.kind == "name"))
            if rows:
                connection.execute(
                    words.insert(),
                    [{"image_id": i, "kind": "name", "text": name_words(p)} for i, p in rows],
                )
        if 5 <= version < 6:
            # GPS positions, ratings and sidecars come from the headers, which the next index
            # reads again (no re-encoding); the stored words stay searchable meanwhile.
            connection.execute(Setting.__table__.insert().values(key=HEADERS_OUTDATED, value=True))
        connection.execute(
            Setting.__table__.update()
            .where(Setting.key == "schema_version")
            .values(value=SCHEMA_VERSION)
        )


def _create_keyword_index(connection) -> None:
    """The FTS5 keyword index and its triggers (SQLite; other databases search words with
    LIKE, see ImageCatalogue.keyword_hits)."""
    if connection.dialect.name == "sqlite":
        for ddl in FTS_DDL:
            connection.execute(text(ddl))


def _translate_error(context) -> None:
    """SQLAlchemy's ``handle_error`` hook: a database failure leaves the storage layer as the
    project's :class:`~mmsearch.errors.DatabaseError`, whoever ran the statement."""
    error = context.sqlalchemy_exception
    if not isinstance(error, DBAPIError):
        return
    # On a disconnect SQLAlchemy still drops the dead connection from its pool.
    raise _database_error(error.orig, context.is_disconnect) from error


def raise_driver_error(connection, error: Exception) -> NoReturn:
    """Raise a driver's error from outside SQLAlchemy's statements (a COPY through the driver's
    own cursor) as the DatabaseError one from inside would be, the connection dropped from the
    pool if it is dead; otherwise the raw error escapes, and the rollback after it meets a dead
    connection and says only that the connection is bad."""
    disconnect = connection.dialect.is_disconnect(error, connection.connection, None)
    if disconnect:
        connection.invalidate(error)
    raise _database_error(error, disconnect) from error


def _database_error(orig, disconnect: bool) -> DatabaseError:
    if disconnect:
        said = " ".join(str(orig).split())  # a server's message spans lines
        return DatabaseError(
            f"the connection to the database server was lost ({said}); what was committed is "
            "kept: run the command again once the server is back",
            orig=orig,
        )
    return DatabaseError(
        f"the library database cannot be read or written ({orig}); "
        "`mmsearch check` says what is wrong",
        orig=orig,
    )


def _read_only_pragmas(dbapi_connection, _record) -> None:
    _math_functions(dbapi_connection)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")  # a write fails at once, never half-way
    cursor.execute(BUSY_TIMEOUT_PRAGMA)
    cursor.close()


def _math_functions(dbapi_connection) -> None:
    """sin and cos in SQL (the --near filter's distance), where SQLite was built without its
    math functions (they are optional before 3.35 and in some builds)."""
    try:
        dbapi_connection.execute("SELECT sin(0), cos(0)")
    except Exception:  # noqa: BLE001 - "no such function": supply Python's
        for name in ("sin", "cos"):
            dbapi_connection.create_function(name, 1, getattr(math, name), deterministic=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    _math_functions(dbapi_connection)
    cursor = dbapi_connection.cursor()
    # WAL: searches read a consistent snapshot while an index run writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(BUSY_TIMEOUT_PRAGMA)
    cursor.close()


def get_setting(session: Session, key: str, default=None):
    # A plain select: every search reads a generation, and the ORM's session.get costs more.
    row = session.execute(select(Setting.value).where(Setting.key == key)).one_or_none()
    return default if row is None else row.value


def set_setting(session: Session, key: str, value) -> None:
    row = session.get(Setting, key)
    if row is None:
        session.add(Setting(key=key, value=value))
    else:
        row.value = value


def bump_generation(session: Session, modality: str) -> int:
    """Increase a modality's generation inside the caller's transaction; returns the new value."""
    key = f"generation.{modality}"
    row = session.execute(select(Setting).where(Setting.key == key)).scalar_one_or_none()
    value = (int(row.value) if row else 0) + 1
    set_setting(session, key, value)
    return value


def chunked(values: Sequence[T]) -> Iterator[Sequence[T]]:
    """``values`` in slices small enough to bind in one statement (see MAX_BOUND_VALUES)."""
    for start in range(0, len(values), MAX_BOUND_VALUES):
        yield values[start : start + MAX_BOUND_VALUES]
