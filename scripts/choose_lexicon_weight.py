"""Choose a towers model's dictionary weight (``lexicon_weight``) on the validation slice.

    python scripts/choose_lexicon_weight.py data/clipart/train.jsonl \
        data/lite0-muse-clipart-memory --model lite0-muse-clipart-memory-jmdict

The queries are the titles of ``mmsearch train``'s validation slice (5% of the training
drawings, never the held-out tenth), translated into Japanese by hand in
``validation_titles_ja.tsv`` beside this script; the second argument is that training run's
folder (:mod:`validation_slice`). Each weight is scored by both directions' Recall@10 over the
slice; a tie goes to the smaller weight, which leaves a query closer to its own vector.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validation_slice import choose, validation_slice  # noqa: E402

from mmsearch.encoders.registry import resolve_model  # noqa: E402
from mmsearch.encoders.towers_encoder import TowersEncoder  # noqa: E402

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
TITLES_JA = Path(__file__).resolve().parent / "validation_titles_ja.tsv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("captions", help="the training captions (train.jsonl)")
    parser.add_argument("run", type=Path, help="the towers model's training output folder")
    parser.add_argument("--model", default="lite0-muse-clipart-memory-jmdict")
    parser.add_argument("--images-root", default="/usr/share/openclipart")
    args = parser.parse_args()

    chosen_on = validation_slice(args.captions, args.run, 0.05, args.images_root)
    encoder = TowersEncoder(resolve_model(args.model))
    encoder.heads = chosen_on.heads
    japanese = dict(line.split("\t") for line in TITLES_JA.read_text("utf-8").splitlines())
    queries = [japanese[title] for title in chosen_on.titles]
    distinct = sorted(set(queries))
    images = chosen_on.heads.images(chosen_on.features)
    print(f"{len(queries)} validation drawings, {len(distinct)} Japanese titles")

    def vectors(weight):
        encoder.config = dataclasses.replace(encoder.config, lexicon_weight=weight)
        return images, encoder.encode_texts(distinct)

    choose(WEIGHTS, vectors, queries, distinct, label=lambda w: f"lexicon_weight {w}")


if __name__ == "__main__":
    main()
