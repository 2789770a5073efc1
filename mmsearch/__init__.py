"""mmsearch: local-first multimodal semantic search over images and texts.

Heavy dependencies (torch, open_clip, FAISS) load on first use, not on import.
"""

from mmsearch.encoders.base import Encoder, OpenClipEncoder
from mmsearch.encoders.registry import (
    ModelSpec,
    get_model,
    list_models,
    register_model,
    resolve_model,
)
from mmsearch.errors import (
    EmptyLibraryError,
    ImageError,
    InputError,
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

__version__ = "0.1.0"

__all__ = [
    "CollectionInfo",
    "EmptyLibraryError",
    "Encoder",
    "ImageError",
    "ImageHit",
    "ImageRecord",
    "InputError",
    "Library",
    "LibraryError",
    "LibraryInfo",
    "MMSearchError",
    "ModelError",
    "ModelMismatchError",
    "ModelSpec",
    "ModelUnavailableError",
    "OpenClipEncoder",
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
