"""The library's query cache: embeddings of the last text queries, kept in its database.

A text query asked before needs no model at all (a cold CLI search answered from here loads
neither torch nor the text tower). New embeddings are held in memory and written together,
:data:`SAVE_EVERY` at a time and whenever the library flushes or closes: a write transaction per
query cost 1.5–2 ms of a 15 ms warm query, and could wait on an index run's transaction.
"""

from __future__ import annotations

import time

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mmsearch.errors import DatabaseError
from mmsearch.storage.engine import BUSY_TIMEOUT_PRAGMA
from mmsearch.storage.schema import CachedQuery

SIZE = 10_000  # text queries whose embeddings are kept (oldest go first)
SAVE_EVERY = 32  # new embeddings held in memory before they are written together


class QueryCache:
    """Query text → embedding, in the library's ``query_cache`` table."""

    def __init__(self, engine):
        self._engine = engine
        self._unsaved: dict[str, np.ndarray] = {}

    def get(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The embeddings the cache holds for ``texts`` (those it lacks are left out)."""
        found = {t: self._unsaved[t] for t in texts if t in self._unsaved}
        if lookup := [t for t in texts if t not in found]:
            stmt = select(CachedQuery.text, CachedQuery.embedding).where(
                CachedQuery.text.in_(lookup)
            )
            with Session(self._engine) as session:
                rows = session.execute(stmt).all()
            found.update((t, np.frombuffer(b, np.float32)) for t, b in rows)
        return found

    def add(self, vectors: dict[str, np.ndarray]) -> None:
        self._unsaved.update(vectors)
        if len(self._unsaved) >= SAVE_EVERY:
            self.save()

    def save(self) -> None:
        """Write the embeddings added since the last save. Best effort: a busy, read-only or
        full library still answers, uncached."""
        vectors, self._unsaved = self._unsaved, {}
        if not vectors:
            return
        now = time.time()
        sqlite = self._engine.dialect.name == "sqlite"
        try:
            with Session(self._engine) as session:
                if sqlite:
                    # Never keep a search waiting on an index run's transaction for its cache
                    # (this connection goes back to the pool with the usual timeout, below).
                    session.connection().exec_driver_sql("PRAGMA busy_timeout = 200")
                for text, vector in vectors.items():
                    session.merge(
                        CachedQuery(text=text, embedding=vector.tobytes(), created_at=now)
                    )
                session.flush()
                count = session.execute(select(func.count()).select_from(CachedQuery)).scalar_one()
                if count > SIZE:
                    oldest = select(CachedQuery.text).order_by(CachedQuery.created_at)
                    stale = oldest.limit(count - SIZE)
                    session.execute(delete(CachedQuery).where(CachedQuery.text.in_(stale)))
                session.commit()
                if sqlite:
                    session.connection().exec_driver_sql(BUSY_TIMEOUT_PRAGMA)
        except DatabaseError:
            pass
