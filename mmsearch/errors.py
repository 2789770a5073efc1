"""The exceptions mmsearch raises.

Every error a user can cause derives from :class:`MMSearchError`; the CLI prints its message
(``Error: ...``) and exits 1. Anything else is a bug and keeps its traceback. Third-party errors
(PIL, FAISS, SQLAlchemy, torch) are translated where they cross into mmsearch, with
``raise ... from exc`` so the cause stays visible to developers.

    MMSearchError
    ├── LibraryError          the library on disk: missing, unreadable, wrong schema, busy
    │   ├── DatabaseError     the database failed (damaged, read-only, full, locked)
    │   ├── EmptyLibraryError a query needs items the library does not hold yet
    │   └── LibraryBusyError  another process is writing to the library
    ├── ModelError            choosing or loading a model
    │   ├── ModelMismatchError  the library was built with another model
    │   └── ModelUnavailableError  weights cannot be had (offline, missing file)
    ├── InputError            a path, file or query the user gave is unusable
    │   ├── ImageError        a file that is not a usable image (carries a short reason code)
    │   └── TextFileError     a caption/text collection file that cannot be read
    └── TrainingError         training or evaluation cannot run as asked
"""

from __future__ import annotations


class MMSearchError(Exception):
    """Base of every error a user can cause; the message says what went wrong and what to do."""


class LibraryError(MMSearchError):
    """The library on disk cannot be used as asked."""


class DatabaseError(LibraryError):
    """The library database failed a read or a write: damaged, read-only, disk full, locked.

    Raised in place of SQLAlchemy's ``DBAPIError`` by every engine mmsearch opens (see
    :func:`mmsearch.storage.engine.open_engine`), so callers catch one project error.

    Attributes:
        orig: the database driver's own error.
    """

    def __init__(self, message: str, *, orig: BaseException) -> None:
        super().__init__(message)
        self.orig = orig


class EmptyLibraryError(LibraryError):
    """A query needs items (images or texts) that the library does not hold yet."""


class LibraryBusyError(LibraryError):
    """Another process holds the library's write lock."""


class ModelError(MMSearchError):
    """A model cannot be chosen or loaded."""


class ModelMismatchError(ModelError):
    """The library was built with another model; mixing vector spaces would give wrong answers."""


class ModelUnavailableError(ModelError):
    """The model's weights cannot be had here (no network, missing file)."""


class InputError(MMSearchError):
    """A path, file or query the user gave is unusable."""


class ImageError(InputError):
    """A file is not a usable image.

    Attributes:
        reason: a short, stable code for grouping skipped files (e.g. ``"corrupt"``).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class TextFileError(InputError):
    """A caption or text collection file cannot be read."""


class TrainingError(MMSearchError):
    """Training or evaluation cannot run as asked."""
