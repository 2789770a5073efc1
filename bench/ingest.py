"""Indexing throughput against its limits, all measured in one run on the same files.

    python bench/ingest.py FOLDER [--model PRESET|ARCH] [--limit N]

For one folder and one model (batch size 32, CPU), in images per second:

- ``encoder``: the model alone on pictures already decoded and fitted (the ceiling when
  encoding is the bottleneck, as for the default ViT-B/32-256);
- ``decode``: the decoder workers alone (one per core: hash, decode, fit; no encoder), the
  ceiling when decoding is the bottleneck, as for the small bundled model;
- ``index``: ``mmsearch index``'s pipeline end to end into a fresh library;
- ``naive``: the straightforward pipeline: full decode with Pillow (a camera RAW file
  demosaiced in full by rawpy) and the fit to the model's input in the main process, then the
  encoder, batch by batch;
- ``both``: 1 / (1/encoder + 1/decode), the ceiling when neither is far the faster: on a
  machine where decoders and encoder share the cores, every image costs both.

``--image-precision fp32`` times the image tower in fp32 rather than the default (its body in
bf16 on CPUs with native bf16).

Any preset may be timed, a towers model (the bundled one) too. open_clip presets without
downloadable weights are timed with random weights of the same architecture: speed does not
depend on the weights' values.
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

# As `mmsearch index` does before torch loads: every stage runs under the index process's policy.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
BATCH = 32


def _encoder(model: str, image_precision: str):
    from mmsearch.encoders.base import OpenClipEncoder
    from mmsearch.encoders.registry import PRESETS, ModelSpec, register_open_clip_configs

    register_open_clip_configs()
    spec = PRESETS.get(model)
    if spec is not None and spec.kind == "towers":
        from mmsearch.encoders.towers_encoder import TowersEncoder

        return TowersEncoder(spec, device="cpu", batch_size=BATCH, image_precision=image_precision)
    if spec is None or (spec.pretrained and not spec.weights_path):
        arch = spec.arch if spec else model
        spec = ModelSpec(name=f"{arch} (random weights)", arch=arch, pretrained=None)
    return OpenClipEncoder(spec, device="cpu", batch_size=BATCH, image_precision=image_precision)


def _files(folder: str, limit: int) -> list[str]:
    from indexer.discover import discover

    return [f.path for f in discover([folder]).files][:limit]


def measure(folder: str, model: str, limit: int, image_precision: str = "auto") -> dict:
    import logging

    from PIL import Image

    from indexer import index_paths
    from indexer.decode import decode_for_model
    from indexer.workers import decode_all
    from mmsearch import open_library
    from mmsearch.imaging.fingerprint import KnownContent
    from mmsearch.imaging.preprocess import fit_to_model

    logging.getLogger().setLevel(logging.ERROR)
    Image.MAX_IMAGE_PIXELS = None  # the naive path decodes what the others accepted
    files = _files(folder, limit)
    encoder = _encoder(model, image_precision)
    cfg = encoder.preprocess
    decode = partial(decode_for_model, cfg=cfg, max_pixels=2 * 89_478_485)

    started = time.perf_counter()
    # One worker per core; nothing known, every file hashed (as a run that could meet copies)
    decoded = decode_all(files, decode, None, 4 * BATCH, KnownContent())
    decoded = [d for d in decoded if d.reason is None]
    decode_s = time.perf_counter() - started
    pictures = np.stack([d.pixels for d in decoded])

    encoder.encode_images(pictures[:2])  # warm up
    started = time.perf_counter()
    encoder.encode_images(pictures)
    encode_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "files"
        listing.mkdir()
        for n, path in enumerate(files):
            os.symlink(path, listing / f"{n:06d}{Path(path).suffix.lower()}")
        with open_library(Path(tmp) / "lib", encoder=encoder) as library:
            started = time.perf_counter()
            summary = index_paths(library, [listing], batch_size=BATCH)
            index_s = time.perf_counter() - started

    usable = [d.path for d in decoded]  # the same files the other paths managed to decode
    started = time.perf_counter()
    for start in range(0, len(usable), BATCH):
        batch = [fit_to_model(_decode_whole(p), cfg) for p in usable[start : start + BATCH]]
        encoder.encode_images(np.stack(batch))
    naive_s = time.perf_counter() - started

    n = len(pictures)
    rates = {
        "encoder": n / encode_s,
        "decode": n / decode_s,
        "index": (summary.added + summary.updated) / index_s,  # reused copies count as done
        "naive": n / naive_s,
    }
    # Decoders and encoder share the cores: when neither is far the faster, the pipeline's
    # ceiling is doing both, one after the other, with every core.
    rates["both"] = 1 / (1 / rates["encoder"] + 1 / rates["decode"])
    return {
        "folder": folder,
        "model": encoder.spec.name,
        "image_precision": image_precision,
        "images": n,
        "reused_by_index": summary.reused,
        "cpus": os.cpu_count(),
        "images_per_second": {k: round(v, 1) for k, v in rates.items()},
        "index_vs_encoder": round(rates["index"] / rates["encoder"], 3),
        "index_vs_decode": round(rates["index"] / rates["decode"], 3),
        "index_vs_both": round(rates["index"] / rates["both"], 3),
        "index_vs_naive": round(rates["index"] / rates["naive"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--model", default="vit-b-32-256")
    parser.add_argument("--limit", type=int, default=10_000, help="at most this many files")
    parser.add_argument("--image-precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()
    report = measure(args.folder, args.model, args.limit, args.image_precision)
    print(json.dumps(report, indent=2))


def _decode_whole(path: str):
    """The whole picture, as a straightforward pipeline decodes it."""
    from PIL import Image

    from mmsearch.imaging.raw import RAW_EXTENSIONS

    if Path(path).suffix.lower() in RAW_EXTENSIONS:
        import rawpy

        with rawpy.imread(path) as raw:
            return Image.fromarray(raw.postprocess(use_camera_wb=True))
    return Image.open(path).convert("RGB")


if __name__ == "__main__":
    main()
