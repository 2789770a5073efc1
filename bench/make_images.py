"""Write N distinct small JPEGs (random colour blocks) for memory and scale runs of the indexer.

    python bench/make_images.py 10000 /tmp/photos/part1 [--seed 1] [--size 96]

Every picture differs (so content hashing reuses none), and decoding is cheap, so a run measures
the indexer's own memory and bookkeeping rather than the decoder's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    args.folder.mkdir(parents=True, exist_ok=True)
    for n in range(args.count):
        blocks = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        picture = Image.fromarray(blocks).resize((args.size, args.size), Image.Resampling.NEAREST)
        picture.save(args.folder / f"{args.seed:02d}-{n:06d}.jpg", quality=90)


if __name__ == "__main__":
    main()
