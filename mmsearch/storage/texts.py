"""Text collections: named sets of texts (captions, labels) with their vectors, searched from an
image by ``mmsearch captions``."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mmsearch.errors import InputError
from mmsearch.records import TextRecord
from mmsearch.results import CollectionInfo, TextHit
from mmsearch.storage.catalogue import as_vectors
from mmsearch.storage.engine import bump_generation
from mmsearch.storage.part import StoragePart
from mmsearch.storage.schema import Collection, TextRow


class TextCollections(StoragePart):
    """The text collections of one library; writes tell the derived index what changed."""

    def refuse_existing(self, name: str, *, replace: bool) -> None:
        """Raises InputError when collection ``name`` exists and is not to be replaced."""
        with Session(self._engine) as session:
            exists = session.execute(
                select(Collection.id).where(Collection.name == name)
            ).scalar_one_or_none()
        if exists is not None and not replace:
            raise InputError(
                f"collection {name!r} already exists; pass --replace to replace it "
                "or --collection NAME to add another"
            )

    def put(
        self,
        name: str,
        records: Sequence[TextRecord],
        vectors: np.ndarray,
        *,
        source: str | None = None,
    ) -> int:
        """Store texts with their vectors as collection ``name``, replacing one of that name, in
        one transaction; returns how many were stored."""
        vectors = as_vectors(vectors, len(records))
        with self._write() as session:
            self._model.admit(session, vectors)
            removed = np.zeros(0, np.int64)
            old = session.execute(
                select(Collection).where(Collection.name == name)
            ).scalar_one_or_none()
            if old is not None:
                removed = _drop(session, old)
                session.flush()
            collection = Collection(name=name, source=source, created_at=time.time())
            session.add(collection)
            rows = [
                TextRow(
                    collection=collection,
                    external_id=r.external_id,
                    text=r.text,
                    meta=r.meta,
                    embedding=v.tobytes(),
                )
                for r, v in zip(records, vectors, strict=True)
            ]
            session.add_all(rows)
            session.flush()
            ids = np.array([row.id for row in rows], dtype=np.int64)
            generation = bump_generation(session, "texts")
        self._indexes.apply("texts", generation, remove=removed, add=(ids, vectors))
        return len(rows)

    def collections(self) -> list[CollectionInfo]:
        stmt = (
            select(Collection.name, func.count(TextRow.id), Collection.source)
            .outerjoin(TextRow)
            .group_by(Collection.id)
            .order_by(Collection.name)
        )
        with Session(self._engine) as session:
            return [CollectionInfo(n, c, s) for n, c, s in session.execute(stmt).all()]

    def remove(self, name: str) -> int:
        """Delete a collection and its texts; returns how many texts went."""
        with self._write() as session:
            ids = _drop(session, self._collection(session, name))
            generation = bump_generation(session, "texts")
        self._indexes.apply("texts", generation, remove=ids)
        return len(ids)

    def ids(self, name: str) -> np.ndarray:
        """The ids of collection ``name``'s texts.

        Raises:
            InputError: there is no such collection.
        """
        with Session(self._engine) as session:
            return _text_ids(session, self._collection(session, name))

    def count(self) -> int:
        with Session(self._engine) as session:
            return session.execute(select(func.count()).select_from(TextRow)).scalar_one()

    def hits(self, found: Sequence[tuple[int, float]]) -> list[TextHit]:
        """(id, score) pairs as hits, in their order; ids no longer stored are left out."""
        with Session(self._engine) as session:
            rows = {
                row.id: row
                for row in session.execute(
                    select(TextRow).where(TextRow.id.in_([i for i, _ in found]))
                ).scalars()
            }
            names = dict(session.execute(select(Collection.id, Collection.name)).all())
        return [
            TextHit(
                id=i,
                text=rows[i].text,
                score=s,
                collection=names[rows[i].collection_id],
                external_id=rows[i].external_id,
                meta=rows[i].meta,
            )
            for i, s in found
            if i in rows
        ]

    def _collection(self, session: Session, name: str) -> Collection:
        found = session.execute(
            select(Collection).where(Collection.name == name)
        ).scalar_one_or_none()
        if found is None:
            names = ", ".join(c.name for c in self.collections()) or "none yet"
            raise InputError(f"no text collection named {name!r} (collections: {names})")
        return found


def _text_ids(session: Session, collection: Collection) -> np.ndarray:
    stmt = select(TextRow.id).where(TextRow.collection_id == collection.id)
    return np.array(session.execute(stmt).scalars().all(), dtype=np.int64)


def _drop(session: Session, collection: Collection) -> np.ndarray:
    """Delete a collection and its texts inside the caller's transaction; returns the text ids."""
    ids = _text_ids(session, collection)
    session.execute(delete(TextRow).where(TextRow.collection_id == collection.id))
    session.delete(collection)
    return ids
