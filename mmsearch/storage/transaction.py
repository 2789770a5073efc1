"""A write transaction on the library database, with failures said in the user's terms."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from mmsearch.errors import DatabaseError, LibraryError
from mmsearch.storage.writer_lock import WriterLock


class WriteTransaction:
    """``with WriteTransaction(engine, dir) as session:`` commits on success, rolls back on error,
    and turns database failures (disk full, read-only, locked) into :class:`LibraryError`.
    It holds the library's writer lock while open."""

    def __init__(self, engine, library_dir: Path, writer_lock: WriterLock):
        self._writer_lock = writer_lock
        self._session = Session(engine)
        self._library_dir = library_dir
        self._server = engine.dialect.name != "sqlite"

    def __enter__(self) -> Session:
        self._writer_lock.__enter__()
        return self._session

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self._session.commit()
            else:
                self._session.rollback()
                if issubclass(exc_type, DatabaseError):
                    raise self._error(exc) from exc
        except DatabaseError as error:
            self._session.rollback()
            raise self._error(error) from error
        finally:
            self._session.close()
            self._writer_lock.__exit__()
        return False

    def _error(self, error) -> LibraryError:
        said = " ".join(str(error.orig).split())  # a server's message spans lines
        where = f"could not write to library {self._library_dir}: {said}"
        if getattr(error.orig, "sqlstate", None) == _INSUFFICIENT_PRIVILEGE:
            return LibraryError(
                f"{where} (this database role may only read: searches work; to index, use a "
                "role that may write, or ask the database's owner to GRANT it INSERT, UPDATE "
                "and DELETE on the library's tables)"
            )
        if self._server:
            return LibraryError(
                f"{where} (is the server up and reachable? what was committed is kept: run the "
                "command again once it is)"
            )
        return LibraryError(
            f"{where} (is the disk full, the folder read-only, or another process writing?)"
        )


_INSUFFICIENT_PRIVILEGE = "42501"  # PostgreSQL's SQLSTATE for "permission denied"
