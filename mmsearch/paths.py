"""Whether a path lies at or under a folder: the one spelling every part uses.

Paths are compared as strings, already absolute (or already resolved, where symlinks matter):
``/photos/2024`` is under ``/photos``, ``/photos2`` is not.
"""

from __future__ import annotations

from collections.abc import Iterable


def as_folder(path: str) -> str:
    """``path`` with exactly one trailing separator: the prefix everything under it shares."""
    return path.rstrip("/") + "/"


def is_under(path: str, folder: str) -> bool:
    """Whether ``path`` lies strictly below ``folder``."""
    return path.startswith(as_folder(folder))


def is_at_or_under(path: str, folders: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``folders`` (or files) or lies below one of them."""
    return any(path == f or is_under(path, f) for f in folders)
