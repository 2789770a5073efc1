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
import time

import numpy as np
from sqlalchemy import Float, bindparam, cast, column, select, table, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.types import UserDefinedType

from mmsearch.errors import DatabaseError, LibraryError
from mmsearch.index.pgvector_layout import (
    DROP_INDEXES,
    TABLE,
    Layout,
    build_index,
    create_table,
    layout,
)
from mmsearch.storage.engine import raise_driver_error
from mmsearch.storage.schema import ImageRow

# HNSW's, measured at 100,000 CLIP-like vectors: recall@10 0.90 at 100, 0.97 at 200, 0.98 at 400
EF_SEARCH = 400
# A filter the planner expects to keep at most this many images is answered by an exact scan of
# them (an inverted file's lists would hold too few): 1% of a million, 118–134 ms (BENCHMARKS.md).
EXACT_BELOW = 20_000
_CHUNK = 5_000
# How long a search trusts the index layout it read (reading it took 0.6 ms of a 10 ms search)
LAYOUT_SECONDS = 30.0


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


def vector_literal(vector: np.ndarray) -> str:
    """pgvector's text form of a vector, ``[x,y,...]``, each float32 to the bit (9 digits).

    Sent as text, not as a ``real[]`` to cast: the driver's array dumper and the server's array
    parser took 1 ms of a 10 ms search at a million vectors (BENCHMARKS.md, "pgvector")."""
    return "[" + ",".join([f"{x:.9g}" for x in np.asarray(vector, np.float32).tolist()]) + "]"


class _Vector(UserDefinedType):
    """pgvector's ``vector`` type (``halfvec(d)``: half precision), for casts in statements."""

    cache_ok = True

    def __init__(self, half_of: int | None = None):
        self.half_of = half_of

    def get_col_spec(self, **_) -> str:
        return f"halfvec({self.half_of})" if self.half_of else "vector"


_VECTORS = table(TABLE, column("image_id"), column("embedding"))


# Session settings for a selective filter's exact scan, reset after it: look each image up
# (a hash or merge join would read every vector's row).
_ONE_BY_ONE = "SET enable_hashjoin = off; SET enable_mergejoin = off"
_JOINS_AGAIN = "RESET enable_hashjoin; RESET enable_mergejoin"
_APPLIED = "mmsearch.pgvector_settings"  # in a connection's info: the search settings it has


def _planned_rows(connection, statement) -> float:
    """How many rows PostgreSQL's planner expects ``statement`` to return (no row is read)."""
    compiled = statement.compile(dialect=connection.dialect)
    plan = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params)
    return float(plan.scalar_one()[0]["Plan"]["Plan Rows"])


def _apply(connection, settings: str) -> None:
    """Give the connection the search settings, unless it has them from its last search."""
    if connection.info.get(_APPLIED) != settings:
        connection.exec_driver_sql(settings)
        connection.info[_APPLIED] = settings


def _statements(k: int, half_of: int | None, conditions, exclude: tuple[int, ...]):
    """The search of the ``k`` nearest to ``:q`` among the rows that pass: (ordered by the
    distance the index holds, so the index answers it; ordered by the score, the same order but
    an expression no index holds, so every row that passes is compared: exact)."""

    def distance(half=None):
        vectors = _VECTORS.c.embedding
        if half:  # the expression an inverted file indexes (pgvector_layout.half_precision)
            vectors = cast(vectors, _Vector(half))
        return vectors.op("<#>", return_type=Float)(cast(bindparam("q"), _Vector(half)))

    score = (-distance()).label("score")  # always of the rows' own, full-precision vectors
    statement = select(_VECTORS.c.image_id, score).limit(k)
    if conditions:
        statement = statement.where(_VECTORS.c.image_id.in_(select(ImageRow.id).where(*conditions)))
    if exclude:
        statement = statement.where(_VECTORS.c.image_id.not_in(exclude))
    return statement.order_by(distance(half_of)), statement.order_by(score.desc())


def _exact(connection, statement, query: dict, one_by_one: bool) -> list:
    if not one_by_one:
        return connection.execute(statement, query).all()
    connection.exec_driver_sql(_ONE_BY_ONE)
    try:
        return connection.execute(statement, query).all()
    finally:
        connection.exec_driver_sql(_JOINS_AGAIN)


def _exists(session: Session) -> bool:
    return bool(session.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": TABLE}).scalar())


class PgvectorIndex:
    """The images' vector index in PostgreSQL, with the search calls of a FaissIndex, except
    that a search is restricted by the filter's conditions, not by ids."""

    filters_in_sql = True  # see mmsearch.search.selection

    def __init__(self, engine, dim: int):
        self._engine = engine
        self.dim = int(dim)
        self._layout: tuple[float, Layout] | None = None  # (when read, layout)

    def _current_layout(self, connection) -> Layout | None:
        """The table's layout, read again after :data:`LAYOUT_SECONDS` (another machine may
        have replaced the index; until then, a search ordered for the old one is still right,
        only slower: no index answers it, so every row is compared)."""
        now = time.monotonic()
        if self._layout is None or now - self._layout[0] > LAYOUT_SECONDS:
            found = layout(connection)
            if found is None:  # no table yet: the first images may come at any moment
                return None
            self._layout = (now, found)
        return self._layout[1]

    def __len__(self) -> int:
        with Session(self._engine) as session:
            if not _exists(session):
                return 0
            return int(session.execute(text(f"SELECT count(*) FROM {TABLE}")).scalar())

    def search(self, queries, k: int, *, exact=False, conditions=(), exclude=()):
        """(scores, ids) of the ``k`` nearest, each 1×k, -1 where fewer exist (FAISS's form).

        ``conditions`` (SQLAlchemy conditions on ImageRow: a search filter) and ``exclude``
        (ids) go into the statement's ``WHERE``, so the database evaluates the filter as it walks
        the index. When the walk yields fewer than ``k`` rows that pass (a filter keeping few
        images), the same statement runs again as an exact scan, which returns every row that
        passes: fewer than ``k`` rows means fewer than ``k`` images match.

        One statement, in autocommit, where the settings are those of the connection's last
        search: the round trips of a transaction and its settings took a third of a search's
        10 ms at a million images (BENCHMARKS.md, "pgvector")."""
        query = {"q": vector_literal(np.atleast_2d(queries)[0])}
        scores, ids = np.full((1, k), -np.inf, np.float32), np.full((1, k), -1, np.int64)
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            table = self._current_layout(connection)
            if table is None:
                return scores, ids
            by_index, by_scan = _statements(k, self.dim if table.half else None, conditions,
                                            tuple(int(i) for i in exclude))  # fmt: skip
            share, one_by_one = 1.0, False
            if conditions and table.kind == "ivfflat" and not exact:
                # The lists nearest the query hold few of a selective filter's images: scan as
                # many of them as an unfiltered query would (more lists), or, when the planner
                # expects few, all of them exactly, one by one.
                passing = _planned_rows(connection, select(ImageRow.id).where(*conditions))
                exact = one_by_one = passing <= EXACT_BELOW
                share = min(1.0, passing / max(table.rows, 1.0))
            if exact:
                rows = _exact(connection, by_scan, query, one_by_one)
            else:
                _apply(connection, table.search_settings(k, EF_SEARCH, share))
                rows = connection.execute(by_index, query).all()
                if conditions and len(rows) < k:
                    rows = _exact(connection, by_scan, query, False)
        rows.sort(key=lambda row: -row[1])  # an inverted file's iterative scan is not in order
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
            session.execute(text(f"{DROP_INDEXES}; DELETE FROM {TABLE}"))
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
