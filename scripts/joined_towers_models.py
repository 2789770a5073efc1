"""Held-out scores of towers models that share their towers, alone and joined: each model's unit
vectors scaled by 1/sqrt(K) and concatenated, so a joined cosine is the mean of the members'
(an ensemble of heads, e.g. trained with other seeds).

    python scripts/joined_towers_models.py data/clipart/heldout.jsonl data/m0 data/m1 data/m2

Prints text → image and image → text Recall@10 for every subset of the models, scored as
``mmsearch eval`` scores one (the first caption of each image; undecodable images left out).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mmsearch.encoders.registry import resolve_model  # noqa: E402
from mmsearch.encoders.towers_encoder import TowersEncoder  # noqa: E402
from mmsearch.train.evaluation import retrieval_scores  # noqa: E402
from mmsearch.train.from_files import scored_pictures  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("captions", help="a captions file, as `mmsearch eval` reads")
    parser.add_argument("models", nargs="+", help="towers model folders or presets")
    parser.add_argument("--images-root", default="/usr/share/openclipart")
    args = parser.parse_args()
    members = [TowersEncoder(resolve_model(m), image_precision="fp32") for m in args.models]
    pictures, captions, _ = scored_pictures(
        args.captions, members[0].preprocess, images_root=args.images_root, skip_missing=True
    )
    # The towers are shared: their features once, each model's heads on them.
    features = np.concatenate(
        [members[0].tower_features(pictures[i : i + 64]) for i in range(0, len(pictures), 64)]
    )
    distinct = sorted(set(captions))
    vectors = [(m.heads.images(features), m.encode_texts(distinct)) for m in members]
    for size in range(1, len(members) + 1):
        for subset in itertools.combinations(range(len(members)), size):
            images = np.hstack([vectors[i][0] for i in subset]) / np.sqrt(size)
            texts = np.hstack([vectors[i][1] for i in subset]) / np.sqrt(size)
            scores = retrieval_scores(images, captions, texts, distinct)
            names = " + ".join(args.models[i] for i in subset)
            print(f"{names}: text → image R@10 {scores.text_to_image['R@10']:.3f}, "
                  f"image → text R@10 {scores.image_to_text['R@10']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
