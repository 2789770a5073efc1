"""One writer per library at a time: an advisory lock on ``write.lock`` in the library folder,
and for a library on a database server, the server's lock too (:mod:`.server_lock`), which
other machines see.

Readers never wait for it (SQLite's WAL gives them a consistent snapshot); they only ask whether
a writer is at work (:meth:`WriterLock.held_elsewhere`). Writers take it for the whole of a
write (an index run holds it from discovery to the last batch), so two runs cannot interleave
their view of what is stored. The operating system drops the lock when its process dies, even
by SIGKILL, so a crashed writer never leaves a library locked.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from mmsearch.errors import LibraryBusyError, LibraryError
from mmsearch.storage.server_lock import ServerLock

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; SQLite's own locking still guards the database
    fcntl = None

LOCK_FILE = "write.lock"


class WriterLock:
    """A reentrant, non-blocking, process-wide writer lock: ``with lock: ...``. Every write
    takes it, so a read-only library's lock refuses with a message that says why."""

    def __init__(
        self, library_dir: Path, *, read_only: bool = False, server: ServerLock | None = None
    ):
        self._library_dir = library_dir
        self._read_only = read_only
        self._server = server  # a database server's lock, which other machines see too
        self._fd: int | None = None
        self._depth = 0

    def __enter__(self) -> WriterLock:
        if self._depth == 0:
            self._fd = self._acquire()
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0:
            if self._server is not None:
                self._server.release()
            if self._fd is not None:
                os.close(self._fd)  # closing releases the lock
                self._fd = None

    def _acquire(self) -> int | None:
        if self._read_only:
            raise LibraryError(
                f"library {self._library_dir} is read-only (a read-only mount or folder, or "
                "another user's files): searches, `info` and `check` work, but it cannot be "
                "changed here; index or repair it where it can be written"
            )
        if fcntl is None:
            return None
        path = self._library_dir / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LibraryError(
                f"cannot write to library {self._library_dir}: {exc.strerror} "
                "(is the folder read-only?)"
            ) from exc
        if not _flock(fd, fcntl.LOCK_EX, attempts=_ATTEMPTS):
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LibraryBusyError(
                f"library {self._library_dir} is being written by another mmsearch process "
                f"(pid {holder}); wait for it to finish and try again (searching works meanwhile)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        holder = self._server.acquire() if self._server is not None else None
        if holder is not None:
            os.close(fd)
            raise LibraryBusyError(
                f"library {self._library_dir} is being written by another mmsearch process "
                f"({holder}, through the same database); wait for it to finish and try again "
                "(searching works meanwhile)"
            )
        return fd

    def held_elsewhere(self) -> bool:
        """Whether another process is writing the library now. A reader asks this (briefly
        taking a shared lock, which a starting writer waits out) and never waits itself."""
        return self.writer_elsewhere() is not None

    def writer_elsewhere(self) -> str | None:
        """The pid of another process writing the library now, else None (see held_elsewhere)."""
        if fcntl is None or self._depth:
            return None
        try:
            fd = os.open(self._library_dir / LOCK_FILE, os.O_RDONLY)
        except OSError:
            fd = None  # never written, or unreadable: nobody to wait for here
        if fd is not None:
            try:
                if not _flock(fd, fcntl.LOCK_SH):
                    return os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)  # closing releases the shared lock
        return self._server.holder() if self._server is not None else None


_ATTEMPTS = 20  # a writer retries for about 0.1 s: readers' shared locks last microseconds


def _flock(fd: int, mode: int, attempts: int = 1) -> bool:
    """Take ``mode`` on ``fd`` without blocking, trying ``attempts`` times 5 ms apart."""
    for attempt in range(attempts):
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < attempts:
                time.sleep(0.005)
    return False
