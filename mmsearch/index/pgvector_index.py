"""Image vectors searched by PostgreSQL itself (pgvector), for a library on a server.

The vectors live in ``image_vectors`` (``vector(d)``, one row per image, deleted with its image
by a foreign key) beside the blob the image row keeps, written in the same transaction, and
searched through an HNSW index on inner product (vectors are unit length: inner product is the
cosine), the way Immich stores them. A search is one SQL statement; a filter is in its ``WHERE``
clause and pgvector's iterative scan keeps walking the graph until ``k`` rows pass it, so a filter
that keeps few images still returns ``k``. A filter that keeps at most :data:`EXACT_BELOW`
images, and ``exact=True``, are answered by an exact scan instead. Every machine that shares the
database searches the same index: nothing is derived into the library folder.

HNSW parameters and ``ef_search`` come from ``bench/pgvector_recall.py`` (BENCHMARKS.md).
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from mmsearch.errors import DatabaseError, LibraryError

TABLE = "image_vectors"
HNSW_M = 16  # pgvector's defaults; see BENCHMARKS.md, "pgvector"
HNSW_EF_CONSTRUCTION = 64
# Measured at 100,000 CLIP-like vectors: recall@10 0.90 at 100, 0.97 at 200, 0.98 at 400 (5 ms)
EF_SEARCH = 400
EXACT_BELOW = 20_000  # allowed ids: scanning them exactly is cheaper and exact
_CHUNK = 5_000


def extension_available(engine) -> bool:
    """Whether the database has pgvector, creating the extension where the role may."""
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        return True
    except (DBAPIError, DatabaseError):  # the library's engines say DatabaseError
        return False


def write(session: Session, ids, vectors: np.ndarray) -> None:
    """Store the images' vectors (in the caller's transaction), the table made at the first."""
    if not len(ids):
        return
    dim = vectors.shape[1]
    session.execute(text(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (image_id INTEGER PRIMARY KEY REFERENCES "
        f"images(id) ON DELETE CASCADE, embedding vector({dim}) NOT NULL)"
    ))  # fmt: skip
    session.execute(text(
        f"CREATE INDEX IF NOT EXISTS {TABLE}_hnsw ON {TABLE} USING hnsw (embedding "
        f"vector_ip_ops) WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"
    ))  # fmt: skip
    session.execute(
        text(
            f"INSERT INTO {TABLE} (image_id, embedding) VALUES (:id, CAST(:v AS real[])::vector) "
            "ON CONFLICT (image_id) DO UPDATE SET embedding = EXCLUDED.embedding"
        ),
        [{"id": int(i), "v": v.tolist()} for i, v in zip(ids, vectors, strict=True)],
    )


def stored(engine) -> dict[int, np.ndarray]:
    """image id → the vector PostgreSQL holds (``check`` compares them with the rows')."""
    found = {}
    with Session(engine) as session:
        if not _exists(session):
            return found
        rows = session.execute(text(f"SELECT image_id, embedding::real[] FROM {TABLE}"))
        for image_id, vector in rows.yield_per(_CHUNK):
            found[int(image_id)] = np.asarray(vector, np.float32)
    return found


def _exists(session: Session) -> bool:
    return bool(session.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": TABLE}).scalar())


class PgvectorIndex:
    """The images' vector index in PostgreSQL, with the search calls of a FaissIndex."""

    def __init__(self, engine, generation: int, dim: int):
        self._engine = engine
        self.generation = generation
        self.dim = dim

    def __len__(self) -> int:
        with Session(self._engine) as session:
            if not _exists(session):
                return 0
            return int(session.execute(text(f"SELECT count(*) FROM {TABLE}")).scalar())

    def search(self, queries, k: int, *, allowed=None, exact: bool = False):
        """(scores, ids) of the ``k`` nearest, each 1×k, -1 where fewer exist (FAISS's form)."""
        query = np.atleast_2d(np.asarray(queries, np.float32))[0]
        scores, ids = np.full((1, k), -np.inf, np.float32), np.full((1, k), -1, np.int64)
        where, params = "", {"q": query.tolist(), "k": int(k)}
        if allowed is not None:
            where, params["allowed"] = "WHERE image_id = ANY(:allowed)", [int(i) for i in allowed]
            exact = exact or len(allowed) <= EXACT_BELOW
        with Session(self._engine) as session:
            if not _exists(session):
                return scores, ids
            if exact:
                session.execute(text("SET LOCAL enable_indexscan = off"))  # a full, exact scan
            else:
                session.execute(text(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, k)}"))
                session.execute(text("SET LOCAL hnsw.iterative_scan = strict_order"))
            rows = session.execute(
                text(
                    f"SELECT image_id, -(embedding <#> CAST(:q AS real[])::vector) FROM {TABLE} "
                    f"{where} ORDER BY embedding <#> CAST(:q AS real[])::vector LIMIT :k"
                ),
                params,
            ).all()
            session.rollback()
        for n, (image_id, score) in enumerate(rows):
            ids[0, n], scores[0, n] = image_id, score
        return scores, ids

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every indexed image."""
        found = stored(self._engine)
        ids = np.fromiter(found, np.int64, len(found))
        vectors = np.stack(list(found.values())) if found else np.zeros((0, self.dim), np.float32)
        return ids, vectors

    def range_search(self, queries: np.ndarray, threshold: float):
        """As FaissIndex.range_search, on an exact in-memory copy (``duplicates`` compares
        every image with every other: one pass over the vectors, not one query each)."""
        from mmsearch.index.faiss_index import FaissIndex

        ids, vectors = self.items()
        flat = FaissIndex.build(self.dim, len(ids), lambda: iter([(ids, vectors)]))
        return flat.range_search(queries, threshold)


def rebuild(engine, rows) -> int:
    """Write every image's vector again from ``rows`` (chunks of ids and vectors, the database's
    truth), in one transaction; returns how many."""
    count = 0
    with Session(engine) as session:
        if _exists(session):
            session.execute(text(f"DELETE FROM {TABLE}"))
        for ids, vectors in rows():
            write(session, ids, vectors)
            count += len(ids)
        session.commit()
    return count


def require_extension(engine) -> None:
    if not extension_available(engine):
        raise LibraryError(
            "this PostgreSQL database has no pgvector extension, and this role cannot create "
            "it: run `CREATE EXTENSION vector;` as its owner or a superuser (pgvector must be "
            "installed on the server), or use --vector-store faiss to search FAISS files in the "
            "library folder instead"
        )
