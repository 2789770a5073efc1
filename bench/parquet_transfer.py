"""Export and import throughput of Parquet embedding shards, and their size on disk.

    python bench/parquet_transfer.py [--images 100000]

A library of ``--images`` rows (random unit vectors at 512 dimensions, as an encoder makes
them; paths, sizes and dates of a photo folder) is exported into shards and imported into a
second library, each timed in the same run; an index run would have spent the encoding.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from indexer.embeddings import export_embeddings, import_embeddings
from mmsearch import open_library
from mmsearch.records import ImageRecord, Words

DIM = 512


class _Identity:
    """An encoder that is never asked to encode: the vectors are made here."""

    dim = DIM
    spec = None

    def identity(self) -> dict:
        return {"model": "bench-random", "arch": "none", "weights": "random-512", "dim": DIM}


def _fill(library, count: int) -> None:
    rng = np.random.default_rng(0)
    with library.writing():
        for start in range(0, count, 10_000):
            n = min(10_000, count - start)
            vectors = rng.standard_normal((n, DIM)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            records = [
                ImageRecord(
                    path=f"/photos/{i // 1000:04d}/IMG_{i:07d}.jpg",
                    size=3_000_000 + i,
                    mtime_ns=1_700_000_000_000_000_000 + i,
                    width=4032,
                    height=3024,
                    format="JPEG",
                    content_hash=f"{i:032x}",
                    taken_at="2024-06-01T12:00:00",
                    taken_from="exif",
                    texts=(Words("name", f"img {i}"),),
                )  # fmt: skip
                for i in range(start, start + n)
            ]
            library.images.put_images(records, vectors)
        library.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = open_library(root / "source", encoder=_Identity())
        started = time.perf_counter()
        _fill(source, args.images)
        filled = time.perf_counter() - started
        started = time.perf_counter()
        done = export_embeddings(source, root / "shards")
        exported = time.perf_counter() - started
        source.close()
        size = sum(p.stat().st_size for p in (root / "shards").glob("part-*.parquet"))
        target = open_library(root / "target", encoder=_Identity())
        started = time.perf_counter()
        loaded = import_embeddings(target, root / "shards")
        imported = time.perf_counter() - started
        target.close()
    report = {
        "images": args.images,
        "dim": DIM,
        "shards": done.shards,
        "shard_mb": round(size / 2**20, 1),
        "bytes_per_image": round(size / args.images),
        "library_filled_s (put_images, for scale)": round(filled, 1),
        "export_s": round(exported, 1),
        "export_images_per_s": round(args.images / exported),
        "import_s": round(imported, 1),
        "import_images_per_s": round(loaded.rows / imported),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
