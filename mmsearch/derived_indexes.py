"""Keeping each modality's vector index in step with the database it is derived from.

The database is the truth. An index file is trusted only when the generation stamped in it equals
the database's generation for that modality; otherwise it is rebuilt from the stored vectors.
Changes committed by this process are mirrored into the loaded index (cheap), unless another
writer got in between, in which case the index is rebuilt. When the collection has outgrown its
kind of index (see :mod:`mmsearch.vector_index`), the index is rebuilt as it is saved.

Searches use a read-only memory map of the file; a writer loads its own copy to change.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from mmsearch.schema import ImageRow, TextRow
from mmsearch.store import get_setting
from mmsearch.vector_index import FaissIndex

MODALITIES = ("images", "texts")
ROWS = {"images": ImageRow, "texts": TextRow}
_REBUILD_CHUNK = 10_000


class DerivedIndexes:
    """The per-modality FAISS indexes of one library folder."""

    def __init__(self, engine, library_dir: Path):
        self._engine = engine
        self._library_dir = library_dir
        self._loaded: dict[str, FaissIndex] = {}
        self._dirty: set[str] = set()

    def path(self, modality: str) -> Path:
        return self._library_dir / f"{modality}.faiss"

    def generation(self, modality: str) -> int:
        with Session(self._engine) as session:
            return int(get_setting(session, f"generation.{modality}", 0))

    def get(self, modality: str) -> FaissIndex:
        """The modality's index, current with the database (loaded, or rebuilt and saved)."""
        generation = self.generation(modality)
        index = self._loaded.get(modality)
        if index is not None and index.generation == generation:
            return index
        index = FaissIndex.load(self.path(modality), mapped=True)
        if index is None or index.generation != generation:
            index = self._rebuild(modality)
            self._dirty.add(modality)
        self._loaded[modality] = index
        self.flush()
        return index

    def _rebuild(self, modality: str) -> FaissIndex:
        row = ROWS[modality]
        with Session(self._engine) as session:
            # One read transaction, so the generation, the count and the vectors (read twice
            # when the index trains) all come from one snapshot of the database.
            session.execute(text("BEGIN"))
            generation = int(get_setting(session, f"generation.{modality}", 0))
            model = get_setting(session, "model")
            count = session.execute(select(func.count()).select_from(row)).scalar_one()

            def chunks():
                stored = session.execute(select(row.id, row.embedding).order_by(row.id))
                for part in stored.yield_per(_REBUILD_CHUNK).partitions():
                    ids, blobs = zip(*part, strict=True)
                    yield (
                        np.array(ids),
                        np.frombuffer(b"".join(blobs), np.float32).reshape(len(ids), -1),
                    )

            dim = int(model["dim"]) if model else 1
            index = FaissIndex.build(dim, count, chunks, generation=generation)
            session.rollback()
        return index

    def rebuild(self, modality: str) -> FaissIndex:
        """Rebuild the modality's index from the database and save it, whatever is loaded."""
        index = self._rebuild(modality)
        self._loaded[modality] = index
        self._dirty.add(modality)
        self.flush()
        return index

    def apply(self, modality: str, generation: int, *, remove=None, add=None) -> None:
        """Mirror a change committed at ``generation`` in the index (or rebuild it)."""
        index = self._loaded.get(modality)
        if index is None or index.mapped:
            index = FaissIndex.load(self.path(modality))
        if index is None or index.generation != generation - 1:
            # Never saved, or another writer got in between: rebuild from the database.
            self._loaded.pop(modality, None)
            self.get(modality)
            return
        self._loaded[modality] = index
        if remove is not None:
            index.remove(remove)
        if add is not None:
            index.add(*add)
        index.generation = generation
        self._dirty.add(modality)

    def flush(self) -> None:
        """Save changed indexes (atomically)."""
        for modality in sorted(self._dirty):
            index = self._loaded.get(modality)
            if index is not None and index.needs_rebuild():
                index = self._loaded[modality] = self._rebuild(modality)
            if index is not None:
                # A read-only library still answers queries; the index is rebuilt next time.
                with contextlib.suppress(OSError):
                    index.save(self.path(modality))
        self._dirty.clear()
