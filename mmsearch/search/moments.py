"""Videos in searches: a video is found by its moments (their own vector index), ranked by
its best one, shown with the moments that match the query best, and compared with other videos
as a sequence of moments (duplicates)."""

from __future__ import annotations

import dataclasses

import numpy as np

from mmsearch.results import ImageHit
from mmsearch.search.duplicates import near_pairs, video_duplicate_groups

MOMENTS_SHOWN = 3  # of a video hit: its best-matching moments...
MOMENT_MARGIN = 0.05  # ...those within this cosine similarity of its best one


def videos_by_moments(images, indexes, vector, fetch: int, selection, exact) -> dict[int, float]:
    """video id → its best moment's score, for the videos whose moments are nearest (of the
    videos in ``selection``, a Selection, when given)."""
    if not indexes.generation("moments"):
        return {}  # no video was ever indexed: not even the (empty) moment index is read
    index = indexes.get("moments")
    moments = images.moment_ids(selection.ids().tolist()) if selection is not None else None
    if not len(index) or (moments is not None and not len(moments)):
        return {}
    # A video's moments crowd each other: look at enough of them to find ``fetch`` videos.
    scores, ids = index.search(vector, MOMENTS_SHOWN * fetch, allowed=moments, exact=exact)
    owners = images.moment_owners([int(i) for i in ids[0] if i >= 0])
    best: dict[int, float] = {}
    for moment, score in zip(ids[0], scores[0], strict=True):
        video = owners.get(int(moment))
        if video is not None:
            best[video] = max(best.get(video, float(score)), float(score))
    return best


def with_moments(images, hits: list[ImageHit], vector: np.ndarray) -> list[ImageHit]:
    """The hits, each video's with its moments that match ``vector`` best and the best
    one's score (exact: every moment of the video compared)."""
    stored = images.moments_of([h.id for h in hits if h.kind == "video"])
    out = []
    for hit in hits:
        if hit.id in stored:
            times, vectors = stored[hit.id]
            scores = vectors @ vector
            best = np.argsort(-scores, kind="stable")[:MOMENTS_SHOWN]
            top = float(scores[best[0]])
            moments = tuple(
                (float(times[i]), float(scores[i]))
                for i in best
                if scores[i] >= top - MOMENT_MARGIN
            )
            hit = dataclasses.replace(hit, score=moments[0][1], moments=moments)
        out.append(hit)
    return out


def video_duplicates(images, indexes, threshold: float) -> list:
    """Groups of videos that are copies, by their sequences of moments (see duplicates)."""
    if not indexes.generation("moments"):
        return []
    index = indexes.get("moments")
    ids, vectors = index.items()
    owners = images.moment_owners(ids.tolist())
    # Videos with a moment each that look alike: the pairs worth comparing in full.
    pairs = {
        (owners[a], owners[b])
        for a, b, _ in near_pairs(ids, vectors, index, threshold)
        if a in owners and b in owners and owners[a] < owners[b]
    }
    compared = images.moments_of(sorted({video for pair in pairs for video in pair}))
    sequences = {video: vectors for video, (_, vectors) in compared.items()}
    return video_duplicate_groups(sequences, pairs, threshold)
