"""The indexer's decoder workers (hash, decode, fit) with each content-hash algorithm.

    python bench/content_hash.py FOLDER [--workers 2] [--rounds 3]

Every file of FOLDER is hashed and decoded for a 224-pixel model by the same worker pool
``mmsearch index`` uses, once with BLAKE2b (libraries made before BLAKE3) and once with BLAKE3
(new libraries), alternating for ``--rounds`` rounds in one run so that both see the same machine.
Prints files per second for each.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

from indexer.decode import decode_for_model
from indexer.workers import decode_all
from mmsearch.imaging.fingerprint import KnownContent
from mmsearch.imaging.pictures import is_image_path
from mmsearch.imaging.preprocess import PreprocessConfig

CFG = PreprocessConfig(size=224, mean=(0.481, 0.458, 0.408), std=(0.269, 0.261, 0.276))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    files = sorted(str(p) for p in args.folder.rglob("*") if p.is_file() and is_image_path(p))
    if not files:
        parser.error(f"no image files in {args.folder}")
    rates: dict[str, list[float]] = {"blake2b": [], "blake3": []}
    for _ in range(args.rounds):
        for algorithm, seen in rates.items():
            decode = partial(decode_for_model, cfg=CFG, max_pixels=2**31, hash_algorithm=algorithm)
            started = time.perf_counter()
            decoded = list(decode_all(files, decode, args.workers, 128, KnownContent()))
            seen.append(len(decoded) / (time.perf_counter() - started))
    print(
        json.dumps(
            {
                "files": len(files),
                "workers": args.workers,
                "files_per_second": {a: [round(r, 1) for r in seen] for a, seen in rates.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
