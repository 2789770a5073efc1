"""A towers training run's validation slice, as the readouts of its model are chosen on it.

``mmsearch train --kind towers`` holds back a slice of the training pictures (``--val-fraction``)
and fits the memory's readouts on it; the scripts beside this one choose what comes after the
memory (a dictionary weight, the class names' readout) the same way: the run's heads, a memory
of the training part only (never the slice), and the slice's pictures, from the run's feature
cache.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mmsearch.encoders import memory  # noqa: E402
from mmsearch.encoders.towers_encoder import HEADS_FILE, Heads, TowersConfig, TowersEncoder  # noqa: E402
from mmsearch.train.captioned import read_captioned  # noqa: E402
from mmsearch.train.evaluation import retrieval_scores  # noqa: E402
from mmsearch.train.lit_features import image_features, text_features  # noqa: E402
from mmsearch.train.lit_training import split_validation  # noqa: E402
from mmsearch.train.memory_fit import memory_arrays  # noqa: E402


@dataclass(frozen=True)
class ValidationSlice:
    config: TowersConfig  # the run's
    heads: Heads  # the run's heads and readouts, the memory holding the training part only
    features: np.ndarray  # the slice's pictures' tower features (plain views)
    titles: list[str]  # their titles


def validation_slice(captions: str, run: Path, fraction: float, images_root: str):
    """The slice of run ``run`` (trained on ``captions`` with ``--val-fraction fraction``)."""
    config = TowersConfig.read(run)
    shipped = Heads.read(run / HEADS_FILE, config)
    towers = TowersEncoder(None, towers_only=config)
    samples = read_captioned(captions, images_root=images_root, skip_missing=True)
    train, val = split_validation(samples, fraction)
    ordered = train + val
    cache = run / "cache"
    features, kept = image_features([s.image for s in ordered], towers, views=1, seed=0,
                                    cache_dir=cache, workers=2)  # fmt: skip
    texts = sorted({c for s in ordered for c in s.captions})
    position = {t: i for i, t in enumerate(texts)}
    in_train = [i for i in range(len(kept)) if kept[i] < len(train)]
    in_val = [i for i in range(len(kept)) if kept[i] >= len(train)]
    alone = Heads({k: v for k, v in shipped.arrays.items() if k not in memory.KEYS})
    captions_of = [[position[c] for c in ordered[kept[i]].captions] for i in in_train]
    trained = memory_arrays(alone, features[0, in_train], captions_of,
                            text_features(texts, towers, cache_dir=cache))  # fmt: skip
    heads = Heads({**alone.arrays, **trained}, config)
    titles = [" ".join(ordered[kept[i]].captions[0].split()) for i in in_val]
    return ValidationSlice(config, heads, features[0, in_val], titles)


def choose(
    settings: Sequence,
    vectors: Callable[[object], tuple[np.ndarray, np.ndarray]],
    queries: list[str],
    distinct: list[str],
    label: Callable[[object], str] = str,
):
    """The setting whose (image vectors, vectors of ``distinct``) score the largest sum of both
    directions' Recall@10 for ``queries``; a tie keeps the earlier one (order the weakest
    first). Prints each setting's scores and the choice."""
    best = None
    for setting in settings:
        images, texts = vectors(setting)
        scores = retrieval_scores(images, queries, texts, distinct)
        t2i, i2t = scores.text_to_image["R@10"], scores.image_to_text["R@10"]
        print(f"{label(setting)}: text → image R@10 {t2i:.4f}, image → text R@10 {i2t:.4f}")
        if best is None or t2i + i2t > best[1]:
            best = (setting, t2i + i2t)
    print(f"chosen: {label(best[0])}")
    return best[0]
