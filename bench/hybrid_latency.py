"""Hybrid search cost at scale: warm query latency of semantic, keyword and hybrid search on a
library of 100,000 images with realistic names, and the keyword index's size per image.

    python bench/hybrid_latency.py [--images 100000]

Builds (once, in data/bench-hybrid-N) a lite0-muse-clipart-memory-jmdict library of synthetic
vectors whose paths read like a photo collection (``/photos/2019/lisbon-trip/IMG_04213.jpg``,
200 event folders) and whose every tenth image carries metadata keywords. Queries repeat, so the
query cache answers the text's embedding and what is timed is the search itself.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mmsearch import open_library  # noqa: E402
from mmsearch.records import ImageRecord, Words  # noqa: E402
from mmsearch.words import name_words  # noqa: E402

PLACES = ["lisbon", "kyoto", "oslo", "lima", "cairo", "hanoi", "quebec", "porto", "seville",
          "bergen", "nara", "cusco", "tangier", "hue", "krakow", "galway", "siena", "ronda",
          "ghent", "bled"]  # fmt: skip
EVENTS = ["trip", "wedding", "birthday", "hike", "concert", "market", "garden", "snow",
          "harbour", "festival"]  # fmt: skip
KEYWORDS = ["kestrel", "grandma", "sunset", "tram", "lighthouse", "bakery", "choir", "kite"]
QUERIES = ["kestrel", "lisbon trip", "a dog on a beach", "IMG_04213", "sunset over the sea",
           "kyoto wedding", "grandma", "snow in the mountains"]  # fmt: skip


def build(library: Path, images: int) -> None:
    rng = np.random.default_rng(0)
    with open_library(library, model="lite0-muse-clipart-memory-jmdict") as lib:
        dim = lib.encoder.dim
        centres = rng.standard_normal((500, dim)).astype(np.float32)
        for start in range(0, images, 10_000):
            count = min(10_000, images - start)
            vectors = centres[rng.integers(0, 500, count)] + 0.6 * rng.standard_normal(
                (count, dim), dtype=np.float32
            )
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            records = []
            for i in range(start, start + count):
                folder = f"{PLACES[i % 20]}-{EVENTS[(i // 20) % 10]}"
                path = f"/photos/{2010 + i % 15}/{folder}/IMG_{i:05d}.jpg"
                words = [Words("name", name_words(path))]
                if i % 10 == 0:
                    words.append(Words("metadata", "\n".join(rng.choice(KEYWORDS, 2))))
                records.append(ImageRecord(path, 1, 1, 640, 480, "JPEG", texts=tuple(words)))
            lib.images.put_images(records, vectors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    args = parser.parse_args()
    library = REPO / "data" / f"bench-hybrid-{args.images}"
    if not (library / "library.db").is_file():
        build(library, args.images)
    with open_library(library, create=False) as lib:
        for query in QUERIES:  # warm: the query cache, the index's pages, the FTS pages
            for mode in ("semantic", "keyword", "hybrid"):
                lib.search_text(query, k=10, mode=mode)
        print(f"{args.images} images; median of 5 rounds of {len(QUERIES)} queries, ms")
        for mode in ("semantic", "keyword", "hybrid"):
            times = []
            for _ in range(5):
                for query in QUERIES:
                    started = time.perf_counter()
                    lib.search_text(query, k=10, mode=mode)
                    times.append(time.perf_counter() - started)
            print(f"  {mode:<9} p50 {1000 * statistics.median(times):6.1f}  "
                  f"p90 {1000 * sorted(times)[int(0.9 * len(times))]:6.1f}")  # fmt: skip
    db = sqlite3.connect(library / "library.db")
    try:
        rows = db.execute(
            "SELECT name, SUM(pgsize) FROM dbstat WHERE name LIKE 'image_words%' "
            "OR name = 'image_texts' OR name LIKE '%image_texts%' GROUP BY name"
        ).fetchall()
        total = sum(size for _, size in rows)
        print(f"words: {total / 1e6:.1f} MB, {total / args.images:.0f} bytes an image")
        for name, size in sorted(rows):
            print(f"  {name}: {size / 1e6:.1f} MB")
    except sqlite3.OperationalError:
        print("this SQLite has no dbstat table to measure the words' size")


if __name__ == "__main__":
    main()
