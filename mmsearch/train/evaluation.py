"""Retrieval quality of a model on a captioned collection: Recall@K and median rank.

Collections repeat captions ("star", "flag"), so a hit is any item whose caption equals the
query's caption, not only the query's own partner. Both directions are measured: text → image
(each distinct caption queries the images) and image → text (each image queries the distinct
captions).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

KS = (1, 5, 10)


@dataclass(frozen=True)
class RetrievalScores:
    text_to_image: dict[str, float]
    image_to_text: dict[str, float]
    images: int
    captions: int
    skipped_images: int = 0  # images that could not be decoded and were left out

    def to_dict(self) -> dict:
        return asdict(self)


def retrieval_scores(
    image_vectors: np.ndarray,
    image_captions: list[str],
    caption_vectors: np.ndarray,
    captions: list[str],
) -> RetrievalScores:
    """Scores from unit vectors: one per image (with its caption) and one per distinct caption."""
    position = {c: i for i, c in enumerate(captions)}
    truth = np.array([position[c] for c in image_captions])
    similarity = image_vectors @ caption_vectors.T  # images x captions
    relevant = truth[:, None] == np.arange(len(captions))[None, :]
    return RetrievalScores(
        text_to_image=_direction(similarity.T, relevant.T),
        image_to_text=_direction(similarity, relevant),
        images=len(image_vectors),
        captions=len(captions),
    )


def _direction(similarity: np.ndarray, relevant: np.ndarray) -> dict[str, float]:
    first = _first_hits(similarity, relevant)
    scores = {f"R@{k}": float(np.mean(first <= k)) for k in KS}
    scores["median_rank"] = float(np.median(first))
    return scores


def recall_at(similarity: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Share of the query rows (``similarity``: queries × items) with a relevant item in their
    top ``k``."""
    return float(np.mean(_first_hits(similarity, relevant) <= k))


def _first_hits(similarity: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Rank of the first relevant item for each query row (1 = best)."""
    order = np.argsort(-similarity, axis=1, kind="stable")
    hit_at = np.take_along_axis(relevant, order, axis=1)
    return hit_at.argmax(axis=1) + 1


def evaluate_encoder(encoder, pictures: np.ndarray, image_captions: list[str]) -> RetrievalScores:
    """Score an encoder on fitted pictures (NxHxWx3 uint8) and their captions."""
    captions = sorted(set(image_captions))
    return retrieval_scores(
        encoder.encode_images(pictures), image_captions, encoder.encode_texts(captions), captions
    )
