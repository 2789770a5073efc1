"""Would hubness reduction lift a model's held-out recall? Plain cosine against two published
re-scorings of the same similarity matrix, on a captioned collection.

    python bench/hubness.py data/clipart/heldout.jsonl --images-root /usr/share/openclipart \
        --model lite0-muse-clipart-memory-jmdict

A few items (a "hub") sit close to many queries of the other modality and crowd the top of
every ranking. Two corrections, each using the collection itself as the bank, as a library
would use its own images or captions:

- CSLS (Lample et al., 2018): ``2·cos(i, t) - r(t) - r(i)``, where ``r`` is an item's mean
  cosine with its ``K`` nearest items of the other modality;
- inverted softmax (Smith et al., 2017): each column of ``exp(β·cos)`` normalised over the
  queries, so an item close to every query counts less for each.

Prints JSON: the plain scores (those of ``mmsearch eval``) and R@10 each way for each setting.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mmsearch.encoders.base import create_encoder  # noqa: E402
from mmsearch.encoders.registry import resolve_model  # noqa: E402
from mmsearch.errors import ImageError  # noqa: E402
from mmsearch.imaging.pictures import open_picture  # noqa: E402
from mmsearch.imaging.preprocess import fit_to_model  # noqa: E402
from mmsearch.train.captioned import read_captioned  # noqa: E402
from mmsearch.train.evaluation import recall_at, retrieval_scores  # noqa: E402


def _vectors(encoder, captions_file: str, images_root: str | None):
    """(image vectors, each image's caption, distinct captions, their vectors); images that
    cannot be decoded are left out, as ``mmsearch eval`` leaves them."""
    pictures, image_captions = [], []
    for sample in read_captioned(captions_file, images_root=images_root):
        try:
            picture = open_picture(sample.image, min_size=encoder.preprocess.size).image
        except ImageError:
            continue
        pictures.append(fit_to_model(picture, encoder.preprocess))
        image_captions.append(sample.captions[0])
    captions = sorted(set(image_captions))
    images = encoder.encode_images(np.stack(pictures))
    return images, image_captions, captions, encoder.encode_texts(captions)


def csls(similarity: np.ndarray, k: int) -> np.ndarray:
    """Cross-domain similarity local scaling of an images × texts cosine matrix."""
    near_images = np.sort(similarity, axis=0)[-k:].mean(axis=0)  # each text's K nearest images
    near_texts = np.sort(similarity, axis=1)[:, -k:].mean(axis=1)
    return 2 * similarity - near_images[None, :] - near_texts[:, None]


def inverted_softmax(similarity: np.ndarray, beta: float, over_axis: int) -> np.ndarray:
    """``exp(β·cos)`` normalised over the queries (axis 0: the images, for image → text)."""
    weights = np.exp(beta * (similarity - similarity.max()))
    return weights / weights.sum(axis=over_axis, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("captions_file")
    parser.add_argument("--images-root")
    parser.add_argument("--model", default="lite0-muse-clipart-memory-jmdict")
    args = parser.parse_args()
    encoder = create_encoder(resolve_model(args.model), device="cpu")
    images, image_captions, captions, texts = _vectors(encoder, args.captions_file,
                                                        args.images_root)  # fmt: skip
    plain = retrieval_scores(images, image_captions, texts, captions)
    position = {c: i for i, c in enumerate(captions)}
    relevant = np.array([position[c] for c in image_captions])[:, None] == np.arange(len(captions))
    similarity = images @ texts.T

    def both(i2t: np.ndarray, t2i: np.ndarray) -> dict:
        return {"t2i_R@10": recall_at(t2i.T, relevant.T, 10),
                "i2t_R@10": recall_at(i2t, relevant, 10)}  # fmt: skip

    report = {"model": args.model, "images": plain.images, "captions": plain.captions,
              "plain": {"t2i": plain.text_to_image, "i2t": plain.image_to_text}}  # fmt: skip
    for k in (5, 10, 20, 50):
        rescored = csls(similarity, k)
        report[f"csls_k{k}"] = both(rescored, rescored)
    for beta in (10, 20, 30, 50, 100):
        report[f"inverted_softmax_beta{beta}"] = both(
            inverted_softmax(similarity, beta, over_axis=0),
            inverted_softmax(similarity, beta, over_axis=1),
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
