"""mmsearch: local-first multimodal semantic search over images and texts.

The public names below load on first use (PEP 562), so that ``import mmsearch.cli`` and
``mmsearch --help`` do not pay for SQLAlchemy, numpy, torch or FAISS.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Before torch or FAISS loads an OpenMP runtime, which reads this once: idle OpenMP threads
# sleep instead of spinning on the cores that the next step needs. Spinning, FAISS's threads
# doubled a warm text query, and torch's took the cores of the indexer's decoder workers
# (clipart-mini on 3,000 PNGs: 107 -> 153 images/s); see BENCHMARKS.md. A user's setting stands.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# public name → the module that defines it
_EXPORTS = {
    "Encoder": "mmsearch.encoders.base",
    "OpenClipEncoder": "mmsearch.encoders.base",
    "ModelSpec": "mmsearch.encoders.registry",
    "get_model": "mmsearch.encoders.registry",
    "list_models": "mmsearch.encoders.registry",
    "register_model": "mmsearch.encoders.registry",
    "resolve_model": "mmsearch.encoders.registry",
    "DatabaseError": "mmsearch.errors",
    "EmptyLibraryError": "mmsearch.errors",
    "ImageError": "mmsearch.errors",
    "InputError": "mmsearch.errors",
    "LibraryBusyError": "mmsearch.errors",
    "LibraryError": "mmsearch.errors",
    "MMSearchError": "mmsearch.errors",
    "ModelError": "mmsearch.errors",
    "ModelMismatchError": "mmsearch.errors",
    "ModelUnavailableError": "mmsearch.errors",
    "TextFileError": "mmsearch.errors",
    "TrainingError": "mmsearch.errors",
    "load_image": "mmsearch.imaging.pictures",
    "Library": "mmsearch.library",
    "open_library": "mmsearch.opening",
    "ImageRecord": "mmsearch.records",
    "TextRecord": "mmsearch.records",
    "CollectionInfo": "mmsearch.results",
    "ImageHit": "mmsearch.results",
    "LibraryInfo": "mmsearch.results",
    "TextHit": "mmsearch.results",
    "ImageFilter": "mmsearch.search.terms",
    "QueryTerm": "mmsearch.search.terms",
    "Relevance": "mmsearch.search.terms",
}

__all__ = [  # the same names as _EXPORTS, literally, for tools that read __all__
    "CollectionInfo",
    "DatabaseError",
    "EmptyLibraryError",
    "Encoder",
    "ImageError",
    "ImageFilter",
    "ImageHit",
    "ImageRecord",
    "InputError",
    "Library",
    "LibraryBusyError",
    "LibraryError",
    "LibraryInfo",
    "MMSearchError",
    "ModelError",
    "ModelMismatchError",
    "ModelSpec",
    "ModelUnavailableError",
    "OpenClipEncoder",
    "QueryTerm",
    "Relevance",
    "TextFileError",
    "TextHit",
    "TextRecord",
    "TrainingError",
    "get_model",
    "list_models",
    "load_image",
    "open_library",
    "register_model",
    "resolve_model",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mmsearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and editors: the same names, imported eagerly
    from mmsearch.encoders.base import Encoder, OpenClipEncoder
    from mmsearch.encoders.registry import (
        ModelSpec,
        get_model,
        list_models,
        register_model,
        resolve_model,
    )
    from mmsearch.errors import (
        DatabaseError,
        EmptyLibraryError,
        ImageError,
        InputError,
        LibraryBusyError,
        LibraryError,
        MMSearchError,
        ModelError,
        ModelMismatchError,
        ModelUnavailableError,
        TextFileError,
        TrainingError,
    )
    from mmsearch.imaging.pictures import load_image
    from mmsearch.library import Library
    from mmsearch.opening import open_library
    from mmsearch.records import ImageRecord, TextRecord
    from mmsearch.results import CollectionInfo, ImageHit, LibraryInfo, TextHit
    from mmsearch.search.terms import ImageFilter, QueryTerm, Relevance
