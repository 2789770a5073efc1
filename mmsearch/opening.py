"""Opening a library: find its folder and database, check what is there, bind the model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mmsearch.encoders.base import Encoder
from mmsearch.errors import LibraryError
from mmsearch.library import Library
from mmsearch.storage.engine import open_engine
from mmsearch.storage.location import (
    is_read_only,
    read_config,
    resolve_library_dir,
    sqlite_url,
    write_config,
)


def open_library(
    path: str | os.PathLike[str] | None = None,
    *,
    model: str | None = None,
    db_url: str | None = None,
    device: str | None = None,
    encoder: Encoder | None = None,
    create: bool = True,
    vector_store: str | None = None,
) -> Library:
    """Open (or create) a library.

    Args:
        path: the library folder; default ``$MMSEARCH_LIBRARY`` or the user data directory.
        model: a ``--model`` value (preset, ``ARCH:TAG``, ``ARCH:FILE``, model folder). Default:
            the model the library was built with, or the default preset for a new library.
        db_url: a SQLAlchemy URL for the database instead of ``library.db`` in the folder;
            remembered in the folder's ``library.json``.
        device: ``cpu`` or ``cuda``; default CUDA when available.
        encoder: an :class:`~mmsearch.encoders.base.Encoder` to use instead of ``model``.
        create: create the folder and database when missing (False: raise instead).
        vector_store: where image vectors are searched, chosen when the library is created:
            ``pgvector`` (PostgreSQL searches them; the default for a PostgreSQL library whose
            database has or can create the extension) or ``faiss`` (FAISS files in the folder,
            the only choice on SQLite).

    A library whose folder or database cannot be written (a read-only mount, a backup) opens
    read-only: searches, ``info`` and ``check`` work, and a write raises a LibraryError that
    says so.

    Raises:
        LibraryError: the library is missing (with ``create=False``) or unusable.
        ModelMismatchError: ``model`` is not the model the library was built with.
    """
    library_dir = resolve_library_dir(path)
    if library_dir.exists() and not library_dir.is_dir():
        raise LibraryError(f"library path {library_dir} is a file, not a folder")
    config = read_config(library_dir) if library_dir.is_dir() else {}
    made_folder = False
    if not library_dir.is_dir() or not (db_url or config.get("db_url") or _has_db(library_dir)):
        # With a server's URL the database is the library: a new folder for it on another
        # machine is made even by a command that creates no library (search, info, check).
        if not (create or db_url):
            raise LibraryError(
                f"no library at {library_dir}; create one with `mmsearch index PATH` "
                "(or pick another with --library / MMSEARCH_LIBRARY)"
            )
        made_folder = not library_dir.exists()
        try:
            library_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LibraryError(f"cannot create library folder {library_dir}: {exc}") from exc
    remembered = without_password(db_url) if db_url else None
    if remembered and without_password(config.get("db_url") or remembered) != remembered:
        raise LibraryError(
            f"library {library_dir} uses database {config['db_url']}, not {remembered}; "
            "omit --db-url or choose another --library"
        )
    url = db_url or config.get("db_url")
    read_only = url is None and is_read_only(library_dir)
    try:
        engine = open_engine(url or sqlite_url(library_dir, read_only=read_only), create=create)
    except LibraryError:
        if made_folder:  # nothing of a library is left behind where none could be opened
            shutil.rmtree(library_dir, ignore_errors=True)
        raise
    try:
        _settle_vector_store(engine, vector_store, writable=not read_only)
    except LibraryError:
        engine.dispose()
        raise
    if remembered and "db_url" not in config:  # only once the database answered
        write_config(library_dir, {**config, "db_url": remembered})
    return Library(
        library_dir, engine, model=model, device=device, encoder=encoder, read_only=read_only
    )


VECTOR_STORES = ("pgvector", "faiss")


def _settle_vector_store(engine, wanted: str | None, *, writable: bool) -> None:
    """Record the vector store of a new library on PostgreSQL, or check ``wanted`` against the
    library's (no setting: FAISS files, as every SQLite library and older ones have)."""
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from mmsearch.index.pgvector_index import extension_available, require_extension
    from mmsearch.storage.engine import get_setting, set_setting
    from mmsearch.storage.schema import ImageRow

    if wanted is not None and wanted not in VECTOR_STORES:
        raise LibraryError(f"--vector-store {wanted!r}: use pgvector or faiss")
    server = engine.dialect.name == "postgresql"
    if wanted == "pgvector" and not server:
        raise LibraryError("--vector-store pgvector needs a library on PostgreSQL (--db-url)")
    with Session(engine) as session:
        recorded = get_setting(session, "vector_store")
        new = not session.execute(select(func.count()).select_from(ImageRow)).scalar_one()
    if recorded is not None or not (server and new and writable):
        if wanted is not None and wanted != (recorded or "faiss"):
            raise LibraryError(
                f"this library searches its vectors with {recorded or 'faiss'}, not {wanted}; "
                "omit --vector-store"
            )
        return
    if wanted == "pgvector":
        require_extension(engine)
    elif wanted is None:
        wanted = "pgvector" if extension_available(engine) else "faiss"
    with Session(engine) as session:
        set_setting(session, "vector_store", wanted)
        session.commit()


def without_password(url: str) -> str:
    """A database URL as ``library.json`` keeps it: never with its password (the server's
    client library reads one from ``PGPASSWORD`` or ``~/.pgpass`` each time)."""
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parts = make_url(url)
        kept = URL.create(parts.drivername, parts.username, None, parts.host, parts.port,
                          parts.database, parts.query)  # fmt: skip
        return kept.render_as_string(hide_password=False)
    except ArgumentError as exc:
        raise LibraryError(f"--db-url {url!r} is not a database URL ({exc})") from None


def discard_if_never_used(library: Library, *, existed: bool) -> None:
    """Remove a library that this run created and that holds nothing: no model was ever
    recorded (a first ``index`` that failed before storing any image, e.g. offline without the
    default model's weights), so that it does not look created. ``existed``: whether the
    library folder held a database before the run; then nothing is removed."""
    if existed or library.has_model_recorded():
        return
    library.close()
    folder = library.library_dir
    for name in ("library.db", "library.db-wal", "library.db-shm", "write.lock"):
        (folder / name).unlink(missing_ok=True)
    if not any(folder.iterdir()):
        folder.rmdir()


def library_exists(path: str | os.PathLike[str] | None) -> bool:
    """Whether a library (its folder with a database, or a database URL) is already there."""
    library_dir = resolve_library_dir(path)
    if not library_dir.is_dir():
        return False
    return _has_db(library_dir) or "db_url" in read_config(library_dir)


def _has_db(library_dir: Path) -> bool:
    return (library_dir / "library.db").is_file()
