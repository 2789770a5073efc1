"""What the indexers hand to a library to store."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageRecord:
    """An image file and what the indexer learnt of it, ready to be stored."""

    path: str
    size: int
    mtime_ns: int
    width: int
    height: int
    format: str | None
    content_hash: str | None = None


@dataclass(frozen=True)
class TextRecord:
    """One text of a collection file."""

    text: str
    external_id: str | None = None
    meta: dict | None = None
