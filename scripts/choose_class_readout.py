"""Choose how a towers model's image vectors read its image tower's class names
(``class_memory``, :mod:`mmsearch.train.class_names`), on a validation slice.

    mmsearch train data/clipart/train.jsonl --images-root /usr/share/openclipart \
        --kind towers --output data/val15 --val-fraction 0.15 ...   (the recipe's other flags)
    python scripts/choose_class_readout.py data/clipart/train.jsonl data/val15

A slice of 15%, not the 5% the memory's readouts were chosen on: 1,000 drawings and 400 titles,
about the held-out tenth's size (817 and 389). On the 5% slice (350 drawings, 154 titles)
nearly every title is found and settings cannot be told apart. The run's heads and memory
readouts are kept, the memory holding its training part only (:mod:`validation_slice`). Each
readout of a grid, weakest pull first, is scored by both directions' English Recall@10; one
is kept only where it beats every weaker one.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validation_slice import choose, validation_slice  # noqa: E402

from mmsearch.encoders.memory import Readout  # noqa: E402
from mmsearch.encoders.towers_encoder import Heads, TowersEncoder  # noqa: E402
from mmsearch.train.class_names import class_arrays  # noqa: E402

GRID = [Readout()] + [
    Readout(k=k, temperature=t, weight=w)
    for w, k, t in itertools.product((0.5, 1.0, 2.0, 3.0), (5, 20), (1.0, 2.0))
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("captions", help="the training captions (train.jsonl)")
    parser.add_argument("run", type=Path, help="a towers training run with --val-fraction 0.15")
    parser.add_argument("--images-root", default="/usr/share/openclipart")
    args = parser.parse_args()

    chosen_on = validation_slice(args.captions, args.run, 0.15, args.images_root)
    heads = Heads({**chosen_on.heads.arrays, **class_arrays(chosen_on.config, chosen_on.heads)},
                  chosen_on.config)  # fmt: skip
    titles = sorted(set(chosen_on.titles))
    towers = TowersEncoder(None, towers_only=chosen_on.config)
    texts = heads.texts(towers.text_features(titles))
    print(f"{len(chosen_on.titles)} validation drawings, {len(titles)} titles")

    def vectors(readout):
        heads.class_memory = readout
        return heads.images(chosen_on.features), texts

    choose(GRID, vectors, chosen_on.titles, titles)


if __name__ == "__main__":
    main()
