"""The memory of a towers model (:mod:`mmsearch.encoders.memory`): built from the training
pictures once the heads are trained, its readouts chosen on the validation slice.

While the readouts are chosen, the memory holds the training pictures only, never the
validation slice, so a validation picture is scored as an unseen one would be; the memory
shipped then holds the slice too. The two readouts are chosen one after the other
(the image side first, then the text side with the image side in place) from a small grid, by
the sum of both directions' Recall@10; a tie goes to the weaker pull, which leaves pictures
unlike the training collection (photographs) closer to what the heads alone give.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mmsearch.encoders import memory
from mmsearch.encoders.memory import Readout
from mmsearch.encoders.towers_encoder import Heads
from mmsearch.train.evaluation import retrieval_scores

# Ordered weakest pull first: on a tie the first one found is kept.
GRID = [
    Readout(k=k, temperature=t, weight=w)
    for w, k, t in itertools.product((0.3, 0.6, 1.0), (10, 20, 50), (0.05, 0.1))
]


@dataclass(frozen=True)
class FittedMemory:
    heads: Heads
    image_memory: Readout
    text_memory: Readout
    scores: dict[str, float]  # validation Recall@10 without and with the memory


def memory_arrays(
    heads: Heads,
    image_features: np.ndarray,
    captions: Sequence[Sequence[int]],
    text_features: np.ndarray,
) -> dict[str, np.ndarray]:
    """The memory of pictures with these tower features and captions.

    Args:
        heads: the trained heads.
        image_features: the pictures' tower features (plain views).
        captions: for each picture, the rows of ``text_features`` of its captions, its title
            first.
        text_features: the text tower's features of every caption.
    """
    images = heads.images(image_features)
    pictures: dict[int, list[int]] = {}  # caption row → the pictures it describes
    for picture, rows in enumerate(captions):
        for row in set(rows):
            pictures.setdefault(row, []).append(picture)
    distinct = sorted(pictures)
    return {
        memory.IMAGES: images,
        memory.TITLES: heads.texts(text_features[[rows[0] for rows in captions]]),
        memory.CAPTIONS: memory.unit(text_features[distinct]),
        memory.CAPTION_IMAGES: np.stack([images[pictures[row]].mean(axis=0) for row in distinct]),
        memory.CAPTION_COUNTS: np.array([len(pictures[row]) for row in distinct], np.float32),
    }


def fit_memory(
    heads: Heads,
    image_features: np.ndarray,
    captions: Sequence[Sequence[int]],
    text_features: np.ndarray,
    val_features: np.ndarray,
    val_captions: Sequence[Sequence[int]],
    *,
    log: Callable[[str], None] = lambda line: None,
) -> FittedMemory:
    """Give ``heads`` (trained, without a memory) a memory of the training pictures.

    The readouts are chosen with a memory of the training pictures (``image_features`` and
    ``captions``, as :func:`memory_arrays` takes them) on the validation pictures
    (``val_features`` and ``val_captions``, whose titles are the queries); the memory then
    shipped holds the validation pictures too, as a model refitted on all its data after its
    settings were chosen.
    """
    with_memory = Heads(
        {**heads.arrays, **memory_arrays(heads, image_features, captions, text_features)}
    )
    titles = [rows[0] for rows in val_captions]
    distinct = sorted(set(titles))
    names = [str(row) for row in titles]
    plain_images = heads.images(val_features)

    def score(image_side: Readout, text_side: Readout) -> float:
        with_memory.image_memory, with_memory.text_memory = image_side, text_side
        result = retrieval_scores(
            with_memory.images(val_features) if image_side.active else plain_images,
            names,
            with_memory.texts(text_features[distinct]),
            [str(row) for row in distinct],
        )
        return result.text_to_image["R@10"] + result.image_to_text["R@10"]

    none = Readout()
    before = score(none, none)
    image_side = max(GRID, key=lambda r: score(r, none))  # max keeps the first of equals
    text_side = max(GRID, key=lambda r: score(image_side, r))
    after = score(image_side, text_side)
    scores = {"val_R@10_sum_heads": round(before, 4), "val_R@10_sum_memory": round(after, 4)}
    log(f"memory: validation R@10 sum {before:.4f} -> {after:.4f} ({image_side}, {text_side})")
    if after <= before:
        return FittedMemory(heads, none, none, scores)
    everything = memory_arrays(
        heads,
        np.concatenate([image_features, val_features]),
        [*captions, *val_captions],
        text_features,
    )
    fitted = Heads({**heads.arrays, **everything})
    fitted.image_memory, fitted.text_memory = image_side, text_side
    return FittedMemory(fitted, image_side, text_side, scores)
