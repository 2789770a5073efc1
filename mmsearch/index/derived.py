"""Keeping each modality's vector index in step with the database it is derived from.

The database is the truth. An index file is trusted only when the generation stamped in it equals
the database's generation for that modality; otherwise it is rebuilt from the stored vectors.
Changes committed by this process are collected (:class:`IndexChanges`) and written into the
file every :data:`PENDING_LIMIT` ids and on :meth:`DerivedIndexes.flush`, unless another writer
got in between, in which case the index is rebuilt. When the collection has outgrown its kind of
index (see :mod:`mmsearch.index.faiss_index`), the index is rebuilt as it is saved.

Nothing here holds a whole index in memory: searches use a read-only memory map of the file,
and writing rewrites it cell by cell from that map. A writer's memory stays flat however large
the library grows.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from mmsearch.errors import DatabaseError
from mmsearch.index import pgvector_index, pgvector_layout
from mmsearch.index.faiss_index import FaissIndex, IndexChanges
from mmsearch.storage.engine import get_setting
from mmsearch.storage.schema import ImageRow, MomentRow, TextRow
from mmsearch.storage.writer_lock import WriterLock
from mmsearch.temporary import remove_leftovers

# "moments": the sampled frames of videos (a video's own row holds its poster moment's vector).
MODALITIES = ("images", "texts", "moments")
ROWS = {"images": ImageRow, "texts": TextRow, "moments": MomentRow}
_REBUILD_CHUNK = 10_000
PENDING_LIMIT = 16_384  # ids of changes held before they are written (32 MB of vectors at 512)


class DerivedIndexes:
    """The per-modality FAISS indexes of one library folder."""

    def __init__(self, engine, library_dir: Path, writer_lock: WriterLock):
        self._engine = engine
        self._library_dir = library_dir
        self._writer_lock = writer_lock
        self._loaded: dict[str, FaissIndex | pgvector_index.PgvectorIndex] = {}
        self._pending: dict[str, tuple[int, int, IndexChanges]] = {}  # base, new generation, ...
        self._wrote_in_database = False  # changed vectors the database indexes (flush)
        with Session(engine) as session:
            # "pgvector": the images' vectors are searched by PostgreSQL (pgvector_index),
            # nothing derived; "faiss": FAISS files in the library folder.
            self.vector_store = get_setting(session, "vector_store", "faiss")

    def in_database(self, modality: str) -> bool:
        """Whether the database searches this modality itself (no index file)."""
        return modality == "images" and self.vector_store == "pgvector"

    def database_index(self) -> str | None:
        """The kind of index the database searches the images with ("hnsw", "ivfflat, N
        lists"), None when it has none or FAISS files are used."""
        if not self.in_database("images"):
            return None
        with Session(self._engine) as session:
            layout = pgvector_layout.layout(session)
        if layout is None or layout.kind is None:
            return None
        return f"{layout.kind}, {layout.lists} lists" if layout.lists else layout.kind

    def write_in(self, session: Session, modality: str, ids, vectors) -> None:
        """Write vectors that the database searches, in the transaction storing them."""
        if self.in_database(modality):
            pgvector_index.write(session, ids, vectors)
            self._wrote_in_database = True

    def path(self, modality: str) -> Path:
        return self._library_dir / f"{modality}.faiss"

    def generation(self, modality: str) -> int:
        with Session(self._engine) as session:
            return int(get_setting(session, f"generation.{modality}", 0))

    def get(self, modality: str) -> FaissIndex:
        """The modality's index, current with the database (loaded, or rebuilt and saved).

        While another process is writing the library, an index file behind the database is used
        as it is: that writer saves it every PENDING_LIMIT changes and at its end, and a rebuild
        here (k-means and the whole file, at every query) would only be redone by it. Hits on
        items it has removed meanwhile find no row and are left out.
        """
        if self.in_database(modality):
            if modality not in self._loaded:  # the database is the index: one for the library
                with Session(self._engine) as session:
                    model = get_setting(session, "model")
                if model is None:  # no image yet: the dimension is not known
                    return pgvector_index.PgvectorIndex(self._engine, 1)
                self._loaded[modality] = pgvector_index.PgvectorIndex(self._engine, model["dim"])
            return self._loaded[modality]
        self._write_pending(modality)
        generation = self.generation(modality)
        index = self._loaded.get(modality)
        if index is not None and index.generation == generation:
            return index
        path = self.path(modality)
        header = FaissIndex.read_header(path)
        if index is None or header is None or header["generation"] != index.generation:
            index = FaissIndex.load(path, mapped=True)
        current = index is not None and index.generation == generation
        behind = index is not None and index.generation < generation
        if not current and not (behind and self._writer_lock.held_elsewhere()):
            index = self._rebuild(modality)
        self._loaded[modality] = index
        return index

    def rebuild(self, modality: str):
        """Rebuild the modality's index from the database and save it, whatever is loaded."""
        if self.in_database(modality):
            pgvector_index.rebuild(self._engine, lambda: self._stored_chunks(modality))
            self._loaded.pop(modality, None)
            return self.get(modality)
        index = self._loaded[modality] = self._rebuild(modality)
        return index

    def _stored_chunks(self, modality: str):
        row = ROWS[modality]
        with Session(self._engine) as session:
            stored = session.execute(select(row.id, row.embedding).order_by(row.id))
            for part in stored.yield_per(_REBUILD_CHUNK).partitions():
                ids, blobs = zip(*part, strict=True)
                vectors = np.frombuffer(b"".join(blobs), np.float32).reshape(len(ids), -1)
                yield np.array(ids), vectors

    def apply(self, modality: str, generation: int, *, remove=None, add=None) -> None:
        """Record a change committed at ``generation``, to be written into the index file."""
        if self.in_database(modality):
            # Written with the rows (write_in), removed with them (a foreign key).
            self._wrote_in_database = True
            return
        base, last, changes = self._pending.get(modality, (None, None, None))
        if changes is None:
            header = FaissIndex.read_header(self.path(modality))
            base = header and header.get("generation")
            changes, last = IndexChanges(), base
        if last != generation - 1:
            # Never saved, or another writer got in between: rebuild from the database.
            self._pending.pop(modality, None)
            self._loaded[modality] = self._rebuild(modality)
            return
        if remove is not None:
            changes.remove(remove)
        if add is not None:
            changes.add(*add)
        self._pending[modality] = (base, generation, changes)
        if len(changes) >= PENDING_LIMIT:
            self._write_pending(modality)

    def flush(self) -> None:
        """Write pending changes into the index files (atomically), give the database's vectors
        the kind of index that suits their number now (pgvector_layout.reorganise), and remove
        what a killed writer left half-written."""
        for modality in sorted(self._pending):
            self._write_pending(modality)
        if self._wrote_in_database:
            self._wrote_in_database = False
            # An optimisation, never a failure: the index in place answers every search. When
            # the server is gone (closing after the run's own error, which must not be masked),
            # the next run that writes tries again.
            with contextlib.suppress(DatabaseError):
                pgvector_layout.reorganise(self._engine)
            self._loaded.pop("images", None)  # it remembers the layout it searched
        remove_leftovers(self._library_dir)

    def _write_pending(self, modality: str) -> None:
        base, generation, changes = self._pending.pop(modality, (None, None, None))
        if changes is None:
            return
        path = self.path(modality)
        index = FaissIndex.load(path, mapped=True)
        if index is None or index.generation != base:
            index = self._rebuild(modality)  # changed under us: the database has it all
        else:
            try:
                index = index.with_changes(path, changes, generation)
            except OSError:
                # Disk full or read-only: the file stays behind the database, so the next use
                # rebuilds it; the changes themselves are safe in the database.
                self._loaded.pop(modality, None)
                return
            if index.needs_rebuild():
                index = self._rebuild(modality)
        self._loaded[modality] = index

    def _rebuild(self, modality: str) -> FaissIndex:
        """The index rebuilt from the database and saved; built in memory and not saved when
        the library folder cannot be written (it is rebuilt again next time)."""
        self._pending.pop(modality, None)
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
            try:
                index = FaissIndex.build_file(
                    self.path(modality), dim, count, chunks, generation=generation
                )
            except OSError:
                # A read-only library still answers queries; the index is rebuilt next time.
                index = FaissIndex.build(dim, count, chunks, generation=generation)
            session.rollback()
        return index
