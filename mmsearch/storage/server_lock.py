"""One writer per library across machines, for a library on a database server (PostgreSQL):
a session-level advisory lock, held on a connection of its own for as long as the write lasts.

The file lock (:mod:`mmsearch.storage.writer_lock`) only sees processes on one machine, and two
machines that share a PostgreSQL library each have their own library folder. The advisory lock
lives in the server, so it serialises them all; the server drops it when the holder's
connection ends, a crashed machine's included. The holder names itself in its connection's
``application_name`` (``mmsearch writer HOST pid N``), which is what a refused writer and a
waiting reader are told.
"""

from __future__ import annotations

import contextlib
import os
import socket

from sqlalchemy import text

# One lock per database (advisory lock keys are per database): "mmsr".
LOCK_KEY = 0x6D6D7372
_HOLDER = text(
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.objid = :key AND a.pid <> "
    "pg_backend_pid() LIMIT 1"
)


class ServerLock:
    """The advisory lock of one library's database; ``acquire`` returns None or the holder."""

    def __init__(self, engine):
        self._engine = engine
        self._connection = None

    def acquire(self) -> str | None:
        """Take the lock; None when taken, else who holds it ("HOST pid N")."""
        connection = self._engine.connect()
        connection.detach()  # closing it ends the session (and the lock), not a pool's return
        me = f"mmsearch writer {socket.gethostname()} pid {os.getpid()}"
        connection.execute(text("SELECT set_config('application_name', :me, false)"), {"me": me})
        taken = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY})
        if taken.scalar():
            connection.commit()  # the lock is the session's; no transaction stays open
            self._connection = connection
            return None
        holder = connection.execute(_HOLDER, {"key": LOCK_KEY}).scalar()
        connection.close()
        return _who(holder)

    def release(self) -> None:
        if self._connection is not None:
            # Unlocked before closing: the server ends a closed session a moment after the
            # client has gone, so a writer that came next at once could still find it held. A
            # dead connection's session is gone already, its lock with it.
            with contextlib.suppress(Exception):
                self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                self._connection.commit()
            self._connection.close()
            self._connection = None

    def holder(self) -> str | None:
        """Who else holds the lock now, or None."""
        with self._engine.connect() as connection:
            return _who(connection.execute(_HOLDER, {"key": LOCK_KEY}).scalar())


def _who(application_name: str | None) -> str | None:
    if application_name is None:
        return None
    return application_name.removeprefix("mmsearch writer ") or "unknown"
