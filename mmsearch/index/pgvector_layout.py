"""Which approximate index PostgreSQL keeps over a library's image vectors, and when it changes.

As with the FAISS files (:mod:`mmsearch.index.faiss_index`), the kind follows the collection's
size:

- under :data:`IVF_FROM` vectors, an HNSW graph (``image_vectors_hnsw``: m 16, ef_construction
  64), made with the table, that takes each image as it comes;
- from :data:`IVF_FROM` on, an inverted file (pgvector's ``ivfflat``, ``image_vectors_ivfflat``)
  of about 4·√N k-means lists (:func:`lists_for`), of which a query scans the nearest
  :func:`probes_for`. It holds the vectors in half precision (``halfvec``): a search reads each
  list's pages from the operating system's cache (pgvector scans them through a small ring of
  buffers, so no ``shared_buffers`` setting keeps them), and half the bytes made it 1.9 times as
  fast at a million, recall@10 0.998 against 0.9995. The rows keep full precision, and the
  scores the search returns are computed from them.

Why not HNSW at every size: a text query lies across CLIP's modality gap, far from every image,
and a graph of image-to-image neighbours leads it astray as the graph grows. At 1,000,000
CLIP-like vectors HNSW reached recall@10 0.87 at 27 ms (ef_search 400), the inverted file 0.998
at 5.9 ms (BENCHMARKS.md, "pgvector"). k-means cells are found from the query's side.

The lists are trained on the vectors there at the build, so the index is rebuilt when the table
has grown or shrunk fourfold since (:func:`reorganise`, at the end of the index run that crossed
the line, as FAISS's cells are retrained). It is built concurrently: searches, here and on other
machines, use the old index until the new one replaces it in one short transaction. A bulk load
(``migrate``, ``check --repair``) builds the kind that suits its count once, at the end
(:func:`build_index`).
"""

from __future__ import annotations

import dataclasses
import math

from sqlalchemy import text
from sqlalchemy.orm import Session

from mmsearch.index.faiss_index import FLAT_LIMIT, RETRAIN_FACTOR, inverted_file_cells
from mmsearch.storage.engine import get_setting, set_setting

TABLE = "image_vectors"
IVF_FROM = FLAT_LIMIT  # the size at which FAISS files become inverted files too
MAX_LISTS = 4096  # pgvector's k-means keeps lists² bounds per sample: 3.5 GB to build 4,096
MIN_PROBES = 8
MIN_SCANNED = 2048  # vectors a query compares at least (recall@10 0.998 at 1M: BENCHMARKS.md)
HNSW_M = 16  # pgvector's defaults; see BENCHMARKS.md, "pgvector"
HNSW_EF_CONSTRUCTION = 64
HNSW_MAX_EF_SEARCH = 1000  # the most pgvector accepts
TRAINED_ON = "pgvector.trained_on"  # setting: the rows the inverted file's lists were trained on
_NEW = f"{TABLE}_new"  # an index being built concurrently
DROP_INDEXES = f"DROP INDEX IF EXISTS {TABLE}_hnsw; DROP INDEX IF EXISTS {TABLE}_ivfflat"


@dataclasses.dataclass(frozen=True)
class Layout:
    """What the table has: its index kind ("hnsw", "ivfflat" or None), lists, estimated rows,
    and whether the index is over half-precision copies of the vectors (:func:`half_precision`)."""

    kind: str | None
    lists: int = 0
    rows: float = 0.0
    half: bool = False

    def search_settings(self, k: int, ef_search: int, share: float = 1.0) -> str:
        """The ``SET`` statements for a search of ``k`` with this index, of which a filter keeps
        ``share`` of the rows. A filter that drops rows makes pgvector walk on (iterative scan):
        the graph in order, the lists in any order (the caller sorts). Session settings, not
        ``SET LOCAL``: a search is then one statement, outside a transaction, and they touch
        nothing but pgvector's index scans, which only searches make."""
        if self.kind == "ivfflat":
            probes = min(self.lists, math.ceil(probes_for(self.lists, self.rows) / share))
            return (
                f"SET ivfflat.probes = {probes}; SET ivfflat.iterative_scan = relaxed_order; "
                f"SET ivfflat.max_probes = {self.lists}"
            )
        ef_search = min(max(ef_search, k), HNSW_MAX_EF_SEARCH)  # the walk goes on past it for k
        return f"SET hnsw.ef_search = {ef_search}; SET hnsw.iterative_scan = strict_order"


def layout(session) -> Layout | None:
    """The table's layout (read through a Session or a Connection), None when it does not exist
    (no image yet)."""
    row = session.execute(
        text(
            "SELECT c.reltuples, am.amname, i_rel.reloptions, "
            "pg_get_indexdef(i.indexrelid) LIKE '%halfvec%' FROM pg_class c "
            "LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisvalid "
            "LEFT JOIN pg_class i_rel ON i_rel.oid = i.indexrelid "
            "LEFT JOIN pg_am am ON am.oid = i_rel.relam AND am.amname IN ('hnsw', 'ivfflat') "
            "WHERE c.oid = to_regclass(:table) ORDER BY am.amname NULLS LAST LIMIT 1"
        ),
        {"table": TABLE},
    ).first()
    if row is None:
        return None
    rows, kind, options, half = row
    lists = next((int(o.split("=")[1]) for o in options or () if o.startswith("lists=")), 0)
    return Layout(kind, lists, max(float(rows), 0.0), bool(half))


def kind_for(count: int) -> str:
    return "ivfflat" if count >= IVF_FROM else "hnsw"


def lists_for(count: int) -> int:
    """As many lists as FAISS would make cells, at most :data:`MAX_LISTS`."""
    return min(inverted_file_cells(count), MAX_LISTS)


def probes_for(lists: int, rows: float) -> int:
    """Lists a query scans: at least :data:`MIN_PROBES`, and enough for :data:`MIN_SCANNED`
    vectors (rows unknown: as many as the lists were made for, lists²/16)."""
    per_list = (rows or lists * lists / 16) / max(lists, 1)
    return min(lists, max(MIN_PROBES, math.ceil(MIN_SCANNED / max(per_list, 1))))


def create_table(session: Session, dim: int, *, indexed: bool) -> None:
    """The vector table, with an HNSW index unless ``indexed`` is False (a bulk load).

    Its vectors are stored in the row (``STORAGE PLAIN``; 2 KB at dimension 512 fits a page),
    not in TOAST: an exact scan, and a selective filter's lookups, then read one page a vector
    instead of a TOAST index and its table as well."""
    session.execute(text(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (image_id INTEGER PRIMARY KEY REFERENCES "
        f"images(id) ON DELETE CASCADE, embedding vector({dim}) STORAGE PLAIN NOT NULL)"
    ))  # fmt: skip
    if indexed:
        session.execute(text(_create_statement(f"{TABLE}_hnsw", "hnsw", 0, dim)))


def build_index(session: Session) -> None:
    """Build the index that suits the table's count over vectors stored without one, in the
    caller's transaction (a bulk load: nobody searches the table yet)."""
    if layout(session) is None:
        return  # no vector stored
    count, dim = _count_and_dim(session)
    kind = kind_for(count)
    session.execute(text(f"SET LOCAL maintenance_work_mem = '{_memory_mb(kind, count, dim)}MB'"))
    session.execute(text(_create_statement(f"{TABLE}_{kind}", kind, count, dim)))
    if kind == "ivfflat":
        set_setting(session, TRAINED_ON, count)


def reorganise(engine) -> str | None:
    """Replace the index when it no longer suits the table's size (see the module docstring);
    returns the new kind, or None when the index suits. The caller holds the writer lock."""
    with Session(engine) as session:
        current = layout(session)
        if current is None:
            return None
        count, dim = _count_and_dim(session)
        trained_on = int(get_setting(session, TRAINED_ON, 0) or 0)
    kind = kind_for(count)
    if current.kind == kind and (
        kind == "hnsw" or trained_on / RETRAIN_FACTOR <= count <= trained_on * RETRAIN_FACTOR
    ):
        return None
    # CREATE INDEX CONCURRENTLY runs outside a transaction and lets searches and writes go on.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {_NEW}"))  # a killed build
        connection.execute(text(f"SET maintenance_work_mem = '{_memory_mb(kind, count, dim)}MB'"))
        try:
            connection.execute(text(_create_statement(_NEW, kind, count, dim, concurrently=True)))
        finally:
            connection.execute(text("RESET maintenance_work_mem"))
    with Session(engine) as session:
        session.execute(text(f"{DROP_INDEXES}; ALTER INDEX {_NEW} RENAME TO {TABLE}_{kind}"))
        set_setting(session, TRAINED_ON, count if kind == "ivfflat" else 0)
        session.commit()
    return kind


def _count_and_dim(session: Session) -> tuple[int, int | None]:
    return session.execute(text(f"SELECT count(*), max(vector_dims(embedding)) FROM {TABLE}")).one()


def half_precision(dim: int) -> str:
    """The expression an inverted file indexes: the vector in half precision."""
    return f"(embedding::halfvec({int(dim)}))"


def _create_statement(name: str, kind: str, count: int, dim: int, *, concurrently=False) -> str:
    how = "CONCURRENTLY " if concurrently else ""
    if kind == "hnsw":
        options = f"m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}"
        indexed = "embedding vector_ip_ops"
    else:
        options = f"lists = {lists_for(count)}"
        indexed = f"{half_precision(dim)} halfvec_ip_ops"
    return (
        f"CREATE INDEX {how}IF NOT EXISTS {name} ON {TABLE} USING {kind} ({indexed}) "
        f"WITH ({options})"
    )


def _memory_mb(kind: str, count: int, dim: int | None) -> int:
    """``maintenance_work_mem`` for the build: an HNSW graph of ``count`` elements in memory
    (pgvector builds it on disk, far slower, when it is smaller); for the inverted file, what its
    k-means needs (50 samples a list, and a bound per sample and list)."""
    vector = 4 * (dim or 0) + 8
    if kind == "hnsw":
        needed = count * (vector + 16 * 2 * HNSW_M + 128)
    else:
        lists = lists_for(count)
        needed = 50 * lists * (vector + 4 * lists) + lists * vector
    return max(64, int(needed * 1.1 / 2**20))
