"""A towers model's memory of its training collection: vectors pulled toward their neighbours'.

The heads of a towers model are two linear maps trained on a few thousand captioned pictures;
what they miss is what the pretrained towers know but the heads never learnt to line up. The
training collection itself can fill part of that gap at no training cost (retrieval-augmented
embeddings, as Tip-Adapter and SuS-X do for CLIP's zero-shot classifiers):

* **a picture** is pulled toward the titles of the training pictures that look most like it:
  its image vector ``v`` becomes ``unit(v + w · Σ softmax(s/τ) t)`` over its ``k`` nearest
  training pictures (cosine ``s`` of image vectors), ``t`` their titles' text vectors;
* **a text** is pulled toward the pictures whose captions read most like it, its nearest
  captions found in the *text tower's own* space, where the multilingual tower puts a sentence
  and its translation side by side (the heads, trained on English captions only, lose part of
  that). A Japanese query thus reaches the pictures whose English captions mean the same,
  including names of sets that the training captions carry only in English;
* **a picture** is also pulled toward the names of the ImageNet classes its image tower's own
  classifier sees in it (its ``k`` likeliest classes, each by its probability under the
  classifier's softmax at ``τ``, so a picture the classifier is unsure of is pulled less; a
  drawing often is, a photograph less often): the towers' pretraining
  knows "alp", "paintbrush" and "sports car", which 7,000 drawings never taught the heads. The
  classifier's rows (its bias appended) are the keys, the pooled features (a 1 appended) the
  query, the class names' text vectors the values.

All three are plain reads of fixed arrays: the memory's stored with the heads (``memory_*`` in
``heads.npz``), the class names in a file of their own (``TowersConfig.classes``); the
memory's readouts (``k``, ``τ``, ``w``) are chosen on the validation slice by
:mod:`mmsearch.train.memory_fit`, the class names' by ``scripts/choose_class_readout.py``. A
picture far from every training picture still gets the memory's pull, as a softmax over its
nearest always sums to one: what that costs on photographs is measured in BENCHMARKS.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# heads.npz arrays of a memory, with their roles
IMAGES = "memory_images"  # N x dim: the training pictures' image vectors
TITLES = "memory_titles"  # N x dim: their titles' text vectors
CAPTIONS = "memory_captions"  # C x text features: each distinct caption, as the text tower reads it
CAPTION_IMAGES = "memory_caption_images"  # C x dim: the mean image vector of its pictures
CAPTION_COUNTS = "memory_caption_counts"  # C: how many pictures it describes
KEYS = (IMAGES, TITLES, CAPTIONS, CAPTION_IMAGES, CAPTION_COUNTS)
# A towers model's class names (TowersConfig.classes, a file of its own)
CLASS_KEYS = "class_keys"  # C x (pooled + 1): the image tower's classifier, its bias last
CLASS_NAMES = "class_names"  # C x dim: each class name's text vector
CLASS_ARRAYS = (CLASS_KEYS, CLASS_NAMES)


@dataclass(frozen=True)
class Readout:
    """How a vector reads from the memory: its ``k`` nearest entries, weighted by a softmax of
    their cosines at ``temperature``, added with ``weight`` (0: the memory is not read)."""

    k: int = 0
    temperature: float = 0.05
    weight: float = 0.0

    @property
    def active(self) -> bool:
        return self.k > 0 and self.weight > 0


def pull(
    vectors: np.ndarray,
    queries: np.ndarray,
    keys: np.ndarray,
    values: np.ndarray,
    readout: Readout,
    *,
    counts: np.ndarray | None = None,
    over_all_keys: bool = False,
) -> np.ndarray:
    """Unit ``vectors`` moved toward the ``values`` of their queries' nearest ``keys``.

    ``queries`` (one per vector) are compared with ``keys`` by dot product (cosines for unit
    vectors, logits for a classifier's rows), in a space that need not be that of ``vectors``
    and ``values``.
    ``counts`` weighs each key as that many equal keys (a caption shared by many pictures, its
    value their mean): the read is then what it would be over one key per picture.
    ``over_all_keys``: the ``k`` weights are the softmax over every key rather than over the
    ``k`` nearest, so a query close to no key in particular (a classifier unsure of a picture)
    is pulled less.
    """
    if not readout.active or len(vectors) == 0:
        return vectors
    k = min(readout.k, len(keys))
    similarity = queries @ keys.T
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(similarity, nearest, axis=1)
    scale = (similarity if over_all_keys else top).max(axis=1, keepdims=True)
    weights = np.exp((top - scale) / readout.temperature)
    if counts is not None:
        weights *= counts[nearest]
    if over_all_keys:
        weights /= np.exp((similarity - scale) / readout.temperature).sum(axis=1, keepdims=True)
    else:
        weights /= weights.sum(axis=1, keepdims=True)
    read = np.einsum("nk,nkd->nd", weights, values[nearest])
    moved = vectors + readout.weight * read
    return unit(moved)


def classifier_queries(features: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """The pooled features that a classifier's ``keys`` (its bias last) read, a 1 appended:
    they are the last of the tower's features."""
    pooled = features[:, features.shape[1] - (keys.shape[1] - 1) :]
    return np.hstack([pooled, np.ones((len(pooled), 1), np.float32)])


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero), as float32."""
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)
