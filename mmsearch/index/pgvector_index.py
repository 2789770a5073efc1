"""Image vectors searched by PostgreSQL itself (pgvector), for a library on a server.

The vectors live in ``image_vectors`` (``vector(d)``, one row per image, deleted with its image
by a foreign key) beside the blob the image row keeps, written in the same transaction, and
searched on inner product (vectors are unit length: inner product is the cosine) through an
approximate index whose kind follows the library's size (:mod:`mmsearch.index.pgvector_layout`:
an HNSW graph, then an inverted file). A search is one SQL statement; a filter is in its
``WHERE`` clause and pgvector's iterative scan walks on until ``k`` rows pass it; a filter that
keeps so few images that the walk ends first is answered by an exact scan of them, so it still
returns ``k``. ``exact=True`` is an exact scan. Every machine that shares the database searches
the same index: nothing is derived into the library folder.

Index parameters, ``ef_search`` and the probes come from ``bench/pgvector_recall.py``
(BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib

import numpy as np
from sqlalchemy import Float, bindparam, cast, column, select, table, text
from sqlalchemy.dialects.postgresql import ARRAY, REAL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.types import UserDefinedType

from mmsearch.errors import DatabaseError, LibraryError
from mmsearch.index.pgvector_layout import TABLE, build_index, create_table, layout
from mmsearch.storage.engine import raise_driver_error
from mmsearch.storage.schema import ImageRow

# HNSW's, measured at 100,000 CLIP-like vectors: recall@10 0.90 at 100, 0.97 at 200, 0.98 at 400
EF_SEARCH = 400
# A filter the planner expects to keep at most this many images is answered by an exact scan of
# them (an inverted file's lists would hold too few): 1% of a million, in 134 ms (BENCHMARKS.md).
EXACT_BELOW = 20_000
_CHUNK = 5_000


def extension_available(engine) -> bool:
    """Whether the database has pgvector, creating the extension where the role may."""
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        return True
    except (DBAPIError, DatabaseError):  # the library's engines say DatabaseError
        return False


def write(session: Session, ids, vectors: np.ndarray, *, indexed: bool = True) -> None:
    """Store the images' vectors (in the caller's transaction), the table made at the first.

    ``indexed``: a new table gets an HNSW index, which takes each row as it comes, as an index
    run adds images (and whatever index the table has takes them after). A bulk load
    (``migrate``, ``check --repair``) passes False and calls
    :func:`~mmsearch.index.pgvector_layout.build_index` at the end: pgvector builds an index in
    one pass several times faster than row by row."""
    if not len(ids):
        return
    if not _exists(session):
        create_table(session, vectors.shape[1], indexed=indexed)
    # Into a staging table by binary COPY (the numbers as they are: 10 times faster than
    # statements that spell them out), then upserted: an image encoded again keeps its id.
    session.execute(text(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {TABLE}_incoming (LIKE {TABLE}) ON COMMIT DROP"
    ))  # fmt: skip
    connection = session.connection()
    cursor = connection.connection.cursor()
    try:
        with cursor.copy(f"COPY {TABLE}_incoming FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.write(_binary_copy(ids, vectors))
    except connection.dialect.loaded_dbapi.Error as error:  # the driver's own, not SQLAlchemy's
        raise_driver_error(connection, error)
    finally:
        with contextlib.suppress(Exception):  # a dead connection's cursor may not close
            cursor.close()
    session.execute(text(
        f"INSERT INTO {TABLE} SELECT * FROM {TABLE}_incoming ON CONFLICT (image_id) "
        f"DO UPDATE SET embedding = EXCLUDED.embedding; TRUNCATE {TABLE}_incoming"
    ))  # fmt: skip


def _binary_copy(ids, vectors: np.ndarray) -> bytes:
    """Rows (id, vector) in PostgreSQL's binary COPY format, pgvector's ``vector`` in its
    binary form (dimension, a reserved zero, the numbers), all big-endian."""
    dim = vectors.shape[1]
    row = np.dtype([("fields", ">i2"), ("id_size", ">i4"), ("id", ">i4"), ("size", ">i4"),
                    ("dim", ">i2"), ("reserved", ">i2"), ("vector", ">f4", (dim,))])  # fmt: skip
    rows = np.zeros(len(ids), row)
    rows["fields"], rows["id_size"], rows["id"] = 2, 4, np.asarray(ids, np.int64)
    rows["size"], rows["dim"], rows["vector"] = 4 + 4 * dim, dim, vectors
    header = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
    return header + rows.tobytes() + b"\xff\xff"  # the trailer: a field count of -1


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


class _Vector(UserDefinedType):
    """pgvector's ``vector`` type, for casts in statements (values travel as ``real[]``)."""

    cache_ok = True

    def get_col_spec(self, **_) -> str:
        return "vector"


_VECTORS = table(TABLE, column("image_id"), column("embedding"))


_ONE_BY_ONE = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"


def _planned_rows(session: Session, statement) -> float:
    """How many rows PostgreSQL's planner expects ``statement`` to return (no row is read)."""
    compiled = statement.compile(dialect=session.get_bind().dialect)
    plan = (
        session.connection()
        .exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params)
        .scalar_one()
    )
    return float(plan[0]["Plan"]["Plan Rows"])


def _exists(session: Session) -> bool:
    return bool(session.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": TABLE}).scalar())


class PgvectorIndex:
    """The images' vector index in PostgreSQL, with the search calls of a FaissIndex, except
    that a search is restricted by the filter's conditions, not by ids."""

    filters_in_sql = True  # see mmsearch.search.selection

    def __init__(self, engine, generation: int, dim: int):
        self._engine = engine
        self.generation = generation
        self.dim = dim

    def __len__(self) -> int:
        with Session(self._engine) as session:
            if not _exists(session):
                return 0
            return int(session.execute(text(f"SELECT count(*) FROM {TABLE}")).scalar())

    def search(self, queries, k: int, *, exact=False, conditions=(), exclude=()):
        """(scores, ids) of the ``k`` nearest, each 1×k, -1 where fewer exist (FAISS's form).

        ``conditions`` (SQLAlchemy conditions on ImageRow: a search filter) and ``exclude``
        (ids) go into the statement's ``WHERE``, so the database evaluates the filter as it walks
        the graph. When the walk yields fewer than ``k`` rows that pass (a filter keeping few
        images), the same statement runs again as an exact scan, which returns every row that
        passes: fewer than ``k`` rows means fewer than ``k`` images match."""
        query = np.atleast_2d(np.asarray(queries, np.float32))[0]
        distance = _VECTORS.c.embedding.op("<#>", return_type=Float)(
            cast(cast(bindparam("q", query.tolist()), ARRAY(REAL)), _Vector())
        )
        score = (-distance).label("score")
        statement = select(_VECTORS.c.image_id, score).limit(int(k))
        if conditions:
            chosen = select(ImageRow.id).where(*conditions)
            statement = statement.where(_VECTORS.c.image_id.in_(chosen))
        if len(exclude):
            statement = statement.where(_VECTORS.c.image_id.not_in([int(i) for i in exclude]))
        # Ordered by the distance, the index answers; ordered by the score (the same order, an
        # expression no index holds), the rows that pass are all compared: exact.
        by_graph, by_scan = statement.order_by(distance), statement.order_by(score.desc())
        with Session(self._engine) as session:
            table = layout(session)
            share = 1.0
            if table is not None and conditions and table.kind == "ivfflat" and not exact:
                # The lists nearest the query hold few of a selective filter's images: scan as
                # many of them as an unfiltered query would (more lists), or, when the planner
                # expects few, all of them exactly.
                passing = _planned_rows(session, select(ImageRow.id).where(*conditions))
                exact = passing <= EXACT_BELOW
                share = min(1.0, passing / max(table.rows, 1.0))
                if exact:  # look each one up (a hash join would read every vector's row)
                    session.execute(text(_ONE_BY_ONE))
            if table is None:
                rows = []
            elif exact:
                rows = session.execute(by_scan).all()
            else:
                session.execute(text(table.search_settings(k, EF_SEARCH, share)))
                rows = session.execute(by_graph).all()
                if conditions and len(rows) < k:
                    rows = session.execute(by_scan).all()
            session.rollback()
        rows.sort(key=lambda row: -row[1])  # an inverted file's iterative scan is not in order
        scores, ids = np.full((1, k), -np.inf, np.float32), np.full((1, k), -1, np.int64)
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
    truth), then build the index over them, in one transaction; returns how many."""
    count = 0
    with Session(engine) as session:
        if _exists(session):
            # Not DROP TABLE: that locks ``images`` too (its foreign key), which ``rows`` reads.
            session.execute(text(
                f"DROP INDEX IF EXISTS {TABLE}_hnsw; DROP INDEX IF EXISTS {TABLE}_ivfflat; "
                f"DELETE FROM {TABLE}"
            ))  # fmt: skip
        for ids, vectors in rows():
            write(session, ids, vectors, indexed=False)
            count += len(ids)
        build_index(session)
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
