"""Choose a towers model's dictionary weight (``lexicon_weight``) on the validation slice.

    python scripts/choose_lexicon_weight.py data/clipart/train.jsonl \
        data/lite0-muse-clipart-memory --model lite0-muse-clipart-memory-jmdict

The queries are the titles of ``mmsearch train``'s validation slice (5% of the training
drawings, never the held-out tenth), translated into Japanese by hand in
``validation_titles_ja.tsv`` beside this script. As when the memory's readouts were chosen, the
memory holds the training drawings only (the second argument is the training run's folder, whose
cache holds their features). Each weight is scored by both directions' Recall@10 over the
slice; a tie goes to the smaller weight, which leaves a query closer to its own vector.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mmsearch.encoders import memory  # noqa: E402
from mmsearch.encoders.registry import resolve_model  # noqa: E402
from mmsearch.encoders.towers_encoder import Heads, TowersEncoder  # noqa: E402
from mmsearch.train.captioned import read_captioned  # noqa: E402
from mmsearch.train.evaluation import retrieval_scores  # noqa: E402
from mmsearch.train.lit_features import image_features, text_features  # noqa: E402
from mmsearch.train.lit_training import split_validation  # noqa: E402
from mmsearch.train.memory_fit import memory_arrays  # noqa: E402

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
TITLES_JA = Path(__file__).resolve().parent / "validation_titles_ja.tsv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("captions", help="the training captions (train.jsonl)")
    parser.add_argument("run", type=Path, help="the towers model's training output folder")
    parser.add_argument("--model", default="lite0-muse-clipart-memory-jmdict")
    parser.add_argument("--images-root", default="/usr/share/openclipart")
    args = parser.parse_args()

    samples = read_captioned(args.captions, images_root=args.images_root, skip_missing=True)
    train, val = split_validation(samples, 0.05)
    encoder = TowersEncoder(resolve_model(args.model))
    towers = TowersEncoder(None, towers_only=encoder.config)
    cache = args.run / "cache"
    ordered = train + val
    features, kept = image_features([s.image for s in ordered], towers, views=1, seed=0,
                                    cache_dir=cache, workers=2)  # fmt: skip
    texts = sorted({c for s in ordered for c in s.captions})
    position = {t: i for i, t in enumerate(texts)}
    text_vectors = text_features(texts, towers, cache_dir=cache)
    in_train = [i for i in range(len(kept)) if kept[i] < len(train)]
    in_val = [i for i in range(len(kept)) if kept[i] >= len(train)]

    heads_alone = Heads({k: v for k, v in encoder.heads.arrays.items() if k not in memory.KEYS})
    captions = [[position[c] for c in ordered[kept[i]].captions] for i in in_train]
    heads = Heads({**heads_alone.arrays, **memory_arrays(
        heads_alone, features[0, in_train], captions, text_vectors)})  # fmt: skip
    heads.image_memory, heads.text_memory = encoder.config.image_memory, encoder.config.text_memory
    encoder.heads = heads

    japanese = dict(line.split("\t") for line in TITLES_JA.read_text("utf-8").splitlines())
    queries = [japanese[" ".join(ordered[kept[i]].captions[0].split())] for i in in_val]
    distinct = sorted(set(queries))
    images = heads.images(features[0, in_val])
    print(f"{len(in_val)} validation drawings, {len(distinct)} Japanese titles")
    best = None
    for weight in WEIGHTS:
        encoder.config = dataclasses.replace(encoder.config, lexicon_weight=weight)
        scores = retrieval_scores(images, queries, encoder.encode_texts(distinct), distinct)
        total = scores.text_to_image["R@10"] + scores.image_to_text["R@10"]
        print(f"lexicon_weight {weight:4}: text → image R@10 {scores.text_to_image['R@10']:.3f}, "
              f"image → text R@10 {scores.image_to_text['R@10']:.3f}")  # fmt: skip
        if best is None or total > best[1]:
            best = (weight, total)
    print(f"chosen: lexicon_weight {best[0]}")


if __name__ == "__main__":
    main()
