"""One writer per library at a time: an advisory lock on ``write.lock`` in the library folder.

Readers never take it (SQLite's WAL gives them a consistent snapshot); writers take it for the
whole of a write (an index run holds it from discovery to the last batch), so two runs cannot
interleave their view of what is stored. The operating system drops the lock when its process
dies, even by SIGKILL, so a crashed writer never leaves a library locked.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmsearch.errors import LibraryBusyError, LibraryError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; SQLite's own locking still guards the database
    fcntl = None

LOCK_FILE = "write.lock"


class WriterLock:
    """A reentrant, non-blocking, process-wide writer lock: ``with lock: ...``."""

    def __init__(self, library_dir: Path):
        self._library_dir = library_dir
        self._fd: int | None = None
        self._depth = 0

    def __enter__(self) -> WriterLock:
        if self._depth == 0:
            self._fd = self._acquire()
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None

    def _acquire(self) -> int | None:
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
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LibraryBusyError(
                f"library {self._library_dir} is being written by another mmsearch process "
                f"(pid {holder}); wait for it to finish and try again (searching works meanwhile)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd
