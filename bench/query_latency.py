"""Text query latency on a large library: warm (a loaded library) and cold (a new CLI process).

    python bench/query_latency.py --images 100000 [--library DIR] [--arch ViT-B-32-256]

Builds (once; reused when DIR holds it) a library of synthetic image vectors with cluster
structure, bound to a checkpoint of the architecture with random weights (pretrained weights
cannot be downloaded here; timing does not depend on their values). Then measures:

- warm: ``Library.search_text`` p50/p90 over varied queries (encode + search + metadata), the
  encoder's share of it, and the encoder alone with fp32, bf16 and int8 text weights;
- cold: ``mmsearch search`` in a new process, the median wall time of several runs of new
  queries and of the same queries asked again (answered from the query cache, no model), and the
  breakdown of one cold run into imports, opening the library, encoding the query (with the
  text tower the library exported, in numpy: no torch), loading the index, searching and reading
  metadata.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

QUERIES = [
    "a red bicycle", "a dog on a beach", "sunset over the sea", "a birthday cake",
    "snow in the mountains", "a cat asleep on a sofa", "city at night", "a wedding dress",
    "children playing football", "an old stone bridge", "a plate of pasta", "autumn leaves",
]  # fmt: skip

_COLD_STEPS = r"""
import sys, time, json
t0 = time.perf_counter()
import faiss, sqlalchemy
import mmsearch.cli
t1 = time.perf_counter()
from mmsearch import open_library
lib = open_library(sys.argv[1], create=False)
t2 = time.perf_counter()
# as a text query: the exported tower, else torch
vector = lib._text_queries.encode([sys.argv[2]])[0]
t3 = time.perf_counter()
index = lib._indexes.get("images")
t4 = time.perf_counter()
hits = lib.searcher.image_hits(vector, 10)
t5 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "open_library": t2 - t1, "encode_query": t3 - t2,
                  "load_index": t4 - t3, "search_and_metadata": t5 - t4,
                  "torch_imported": "torch" in sys.modules}))
"""


def build(library: Path, images: int, arch: str) -> None:
    import open_clip
    import torch

    from mmsearch import open_library
    from mmsearch.encoders.registry import register_open_clip_configs
    from mmsearch.records import ImageRecord

    register_open_clip_configs()  # the small architectures defined as data
    checkpoint = library.parent / f"{library.name}-{arch}-random.pt"
    if not checkpoint.exists():
        torch.manual_seed(0)
        torch.save(open_clip.create_model(arch).state_dict(), checkpoint)
    rng = np.random.default_rng(0)
    with open_library(library, model=f"{arch}:{checkpoint}") as lib:
        dim = lib.encoder.dim
        centres = rng.standard_normal((1000, dim)).astype(np.float32)
        for start in range(0, images, 10_000):
            count = min(10_000, images - start)
            vectors = centres[rng.integers(0, 1000, count)] + 0.6 * rng.standard_normal(
                (count, dim), dtype=np.float32
            )
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            records = [
                ImageRecord(f"/synthetic/{start + i:07d}.jpg", 1, 1, 640, 480, "JPEG")
                for i in range(count)
            ]
            lib.images.put_images(records, vectors)


def warm(library: Path) -> dict:
    import sqlite3

    from mmsearch import open_library

    # Every text new to the library's query cache, and as short as real queries (a unique
    # number in each text would add a token per digit, and the tower's time grows with them).
    db = sqlite3.connect(library / "library.db")
    db.execute("DELETE FROM query_cache")
    db.commit()
    db.close()
    with open_library(library, create=False) as lib:
        for query in QUERIES[:3]:
            lib.search_text(query, k=10)
        total, encode = [], []
        for round_ in range(5):
            for query in QUERIES:
                text = f"{query} {round_}"
                started = time.perf_counter()
                lib.encoder.encode_texts([text])
                encode.append(time.perf_counter() - started)
                started = time.perf_counter()
                lib.search_text(text, k=10)
                total.append(time.perf_counter() - started)
        by_precision = _encoder_by_precision(lib.encoder.spec)
    return {
        "queries": len(total),
        "p50_ms": round(1000 * statistics.median(total), 1),
        "p90_ms": round(1000 * sorted(total)[int(0.9 * len(total))], 1),
        "encode_p50_ms": round(1000 * statistics.median(encode), 1),
        "encode_p50_ms_by_text_precision": by_precision,
    }


def _encoder_by_precision(spec, rounds: int = 5) -> dict:
    """The text encoder alone, p50 per query, for each text precision: interleaved, so that the
    machine's noise falls on all of them alike."""
    from mmsearch.encoders.base import OpenClipEncoder

    encoders = {p: OpenClipEncoder(spec, text_precision=p) for p in ("fp32", "bf16", "int8")}
    times = {p: [] for p in encoders}
    for round_ in range(rounds + 1):
        for query in QUERIES:
            for precision, encoder in encoders.items():
                started = time.perf_counter()
                encoder.encode_texts([f"{query} {precision} {round_}"])
                if round_:  # the first round loads the models
                    times[precision].append(time.perf_counter() - started)
    return {p: round(1000 * statistics.median(t), 1) for p, t in times.items()}


def _cold_search(library: Path, query: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mmsearch", "search", query, "--library", str(library), "-k", "10"],
        check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - started


def cold(library: Path, runs: int = 5) -> dict:
    walls, repeated = [], []
    for n in range(runs):
        query = f"{QUERIES[n % len(QUERIES)]} {n} cold"  # new to the cache, which warm() cleared
        walls.append(_cold_search(library, query))
        repeated.append(_cold_search(library, query))  # now answered from the cache
    steps = subprocess.run(
        [sys.executable, "-c", _COLD_STEPS, str(library), QUERIES[0]],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return {
        "runs": runs,
        "median_s": round(statistics.median(walls), 2),
        "repeated_query_median_s": round(statistics.median(repeated), 2),
        "breakdown_s": {
            k: round(v, 3) for k, v in json.loads(steps).items() if k != "torch_imported"
        },
        "torch_imported": json.loads(steps)["torch_imported"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--library", default="data/bench-100k")
    parser.add_argument("--arch", default="ViT-B-32-256")
    parser.add_argument("--cold-runs", type=int, default=5)
    args = parser.parse_args()
    library = Path(args.library)
    if not (library / "library.db").exists():
        started = time.perf_counter()
        build(library, args.images, args.arch)
        print(f"built {library} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    from mmsearch import open_library

    with open_library(library, create=False) as lib:
        lib.prepare_text_queries()  # what an index run does: cold text queries need no torch
    report = {"images": args.images, "arch": args.arch, "warm": warm(library)}
    report["cold"] = cold(library, args.cold_runs)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
