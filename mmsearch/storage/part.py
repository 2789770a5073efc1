"""What every part of a library's storage is built with (the image catalogue, the text
collections): the engine to read through, the writer's transaction, the derived indexes to
tell, the model that vouches for vectors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
from sqlalchemy.orm import Session

from mmsearch.storage.transaction import WriteTransaction


class IndexUpdates(Protocol):
    """What a write tells the derived vector indexes
    (:class:`~mmsearch.index.derived.DerivedIndexes`)."""

    def apply(self, modality: str, generation: int, *, remove=None, add=None) -> None: ...

    def write_in(self, session: Session, modality: str, ids, vectors) -> None:
        """Vectors the database searches itself, written in the storing transaction."""


class VectorAdmission(Protocol):
    """Who vouches for vectors before they are stored
    (:class:`~mmsearch.library_model.LibraryModel`)."""

    def admit(self, session: Session, vectors: np.ndarray) -> None: ...


class StoragePart:
    """A part of a library's database with vectors: it reads through ``engine``, writes through
    ``write`` (a transaction under the writer lock), has ``model`` vouch for new vectors, and
    tells ``indexes`` what each committed write changed."""

    def __init__(
        self,
        engine,
        write: Callable[[], WriteTransaction],
        indexes: IndexUpdates,
        model: VectorAdmission,
    ):
        self._engine = engine
        self._write = write
        self._indexes = indexes
        self._model = model
