"""Approximate search at scale: recall against exact search, latency and memory per vector.

    python bench/ann_recall.py --vectors 1000000 [--dim 512] [--queries 200]

Builds mmsearch's image index (``FaissIndex.build``: the kind the library picks for that many
vectors) over synthetic unit vectors with cluster structure (100 topics, 10,000 clusters), and
asks queries drawn apart from the data the way text queries are from images in CLIP: a point of
the data moved along one shared "modality gap" direction plus noise, so the best match scores
about 0.4, not 0.9. Prints, as JSON:

- build: training and adding times, the number of IVF cells and probes;
- recall@k of the default search against the exact answer, and its p50/p90 latency for one query;
- the exact alternatives in the same run: numpy brute force (a matrix product over all vectors,
  the way rclip searches), FAISS's flat scan, and ``exact=True`` (every cell scanned);
- memory: the file's bytes per vector, and the resident memory of a process that memory-maps the
  file and runs the queries, against one that reads it whole;
- a writer's cost: a new process that adds as many new vectors as a writer holds before saving
  (``PENDING_LIMIT``) and rewrites the file cell by cell, its time and anonymous memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mmsearch.index.faiss_index import FaissIndex  # noqa: E402

_CHUNK = 100_000

_OPEN_AND_SEARCH = r"""
import json, sys, time
import numpy as np
from mmsearch.index.faiss_index import FaissIndex
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
base = status("VmRSS:")
started = time.perf_counter()
index = FaissIndex.load(sys.argv[1], mapped=sys.argv[2] == "mapped")
opened = time.perf_counter() - started
for query in np.load(sys.argv[3]):
    index.search(query, 10)
print(json.dumps({"open_s": round(opened, 3), "rss_mb": round((status("VmRSS:") - base) / 2**20),
                  "anonymous_mb": round(status("RssAnon:") / 2**20)}))
"""

_WRITE_CHANGES = r"""
import json, sys, threading, time
import numpy as np
from mmsearch.index.derived import PENDING_LIMIT
from mmsearch.index.faiss_index import FaissIndex, IndexChanges
def anonymous():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
index = FaissIndex.load(sys.argv[1], mapped=True)
fresh = np.random.default_rng(1).standard_normal((PENDING_LIMIT, index.dim), dtype=np.float32)
changes = IndexChanges()
changes.add(np.arange(PENDING_LIMIT) + 10**9, fresh / np.linalg.norm(fresh, axis=1)[:, None])
before, peak, done = anonymous(), [0], threading.Event()
def sample():
    while not done.wait(0.05):
        peak[0] = max(peak[0], anonymous())
threading.Thread(target=sample, daemon=True).start()
started = time.perf_counter()
written = index.with_changes(sys.argv[1], changes, index.generation + 1)
seconds = time.perf_counter() - started
done.set()
print(json.dumps({"added": PENDING_LIMIT, "count": len(written), "seconds": round(seconds, 1),
                  "anonymous_before_mb": round(before / 2**20),
                  "anonymous_peak_mb": round(max(peak[0], anonymous()) / 2**20)}))
"""


def synthetic(count: int, dim: int, queries: int, seed: int = 0):
    """(data, queries): clustered unit vectors, and queries drawn apart from them."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((100, dim)).astype(np.float32)
    centres = topics[rng.integers(0, 100, 10_000)] + 0.8 * rng.standard_normal(
        (10_000, dim), dtype=np.float32
    )

    def points(n: int) -> np.ndarray:
        v = centres[rng.integers(0, 10_000, n)] + rng.standard_normal((n, dim), dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    data = np.concatenate([points(min(_CHUNK, count - s)) for s in range(0, count, _CHUNK)])
    gap = rng.standard_normal(dim).astype(np.float32)
    noise = rng.standard_normal((queries, dim)).astype(np.float32)
    q = points(queries) + 1.2 * gap / np.linalg.norm(gap)
    q += 0.8 * noise / np.linalg.norm(noise, axis=1, keepdims=True)
    return data, q / np.linalg.norm(q, axis=1, keepdims=True)


def timed(function, repeats) -> list[float]:
    times = []
    for argument in repeats:
        started = time.perf_counter()
        function(argument)
        times.append(time.perf_counter() - started)
    return times


def ms(times: list[float], q: float = 0.5) -> float:
    return round(float(np.quantile(times, q)) * 1000, 2)


def build(data: np.ndarray, ids: np.ndarray) -> FaissIndex:
    """The index the library would build for these vectors."""

    def chunks():
        for s in range(0, len(data), _CHUNK):
            yield ids[s : s + _CHUNK], data[s : s + _CHUNK]

    return FaissIndex.build(data.shape[1], len(data), chunks)


def search_figures(index, data, ids, queries, k: int) -> dict:
    """Recall and latency of the default search, against the exact ways to search."""
    import faiss

    scores = queries @ data.T  # the exact answer, all queries at once
    truth = ids[np.argsort(-scores, axis=1)[:, :k]]
    best = np.sort(scores, axis=1)[:, ::-1]

    def recall(found) -> float:
        return statistics.mean(len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=False))

    found, exact_found = [], []
    ann = timed(lambda q: found.append(index.search(q, k)[1][0]), queries)
    exact = timed(lambda q: exact_found.append(index.search(q, k, exact=True)[1][0]), queries[:20])
    numpy_scan = timed(lambda q: np.argpartition(-(data @ q), k)[:k], queries[:20])
    flat = faiss.IndexFlatIP(data.shape[1])
    flat.add(data)
    flat_scan = timed(lambda q: flat.search(q[None], k), queries[:20])
    return {
        "query_best_score_mean": round(float(best[:, 0].mean()), 3),
        "query_kth_score_mean": round(float(best[:, k - 1].mean()), 3),
        f"recall@{k}": round(recall(found), 4),
        "ann_p50_ms": ms(ann),
        "ann_p90_ms": ms(ann, 0.9),
        f"exact_mode_recall@{k}": round(recall(exact_found), 4),
        "exact_mode_p50_ms": ms(exact),
        "faiss_flat_p50_ms": ms(flat_scan),
        "numpy_brute_force_p50_ms": ms(numpy_scan),
        "speedup_vs_numpy": round(ms(numpy_scan) / ms(ann), 1),
    }


def memory_figures(index, queries) -> dict:
    """The file's size, and a new process's memory after opening it and running the queries."""
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        path = Path(tmp) / "images.faiss"
        index.save(path)
        np.save(Path(tmp) / "queries.npy", queries)
        figures = {"file_bytes_per_vector": round(path.stat().st_size / len(index), 1)}
        for mode in ("mapped", "read"):
            out = subprocess.run(
                [sys.executable, "-c", _OPEN_AND_SEARCH, str(path), mode, f"{tmp}/queries.npy"],
                capture_output=True,
                text=True,
                check=True,
                cwd=Path(__file__).resolve().parent.parent,
            )
            figures[mode] = json.loads(out.stdout)
        out = subprocess.run(
            [sys.executable, "-c", _WRITE_CHANGES, str(path)],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        figures["writing_changes"] = json.loads(out.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    data, queries = synthetic(args.vectors, args.dim, args.queries)
    ids = np.arange(1, len(data) + 1, dtype=np.int64)
    started = time.perf_counter()
    index = build(data, ids)
    report = {
        "vectors": args.vectors,
        "dim": args.dim,
        "queries": args.queries,
        "build_s": round(time.perf_counter() - started, 1),
        "cells": index.cells,
        "probes": index.probes,
        **search_figures(index, data, ids, queries, args.k),
    }
    del data
    report["memory"] = memory_figures(index, queries)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
