"""``mmsearch duplicates``: groups of near-identical images across a whole library.

Every stored vector is matched against the image index with a FAISS range search (all items
scoring at least the threshold), in chunks so memory stays flat; pairs are joined into groups with
a union-find. Exact copies score 1.0; how high re-encoded, resized or lightly edited copies of
one photo score depends on the model, so the default threshold is the model's own
(``ModelSpec.duplicate_threshold``, measured by ``bench/duplicate_threshold.py``).

Videos are compared as sequences of moments, never by one frame: two videos are copies when
the moments of the shorter one, in order, match moments of the other (a re-encoded or trimmed
copy), so two videos that share an intro or a logo are not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

_CHUNK = 2048


@dataclass(frozen=True)
class DuplicateGroup:
    paths: list[str]  # the group's images, by path
    min_score: float  # the lowest similarity of a pair that joined the group

    def to_dict(self) -> dict:
        return asdict(self)


def duplicate_groups(ids: np.ndarray, vectors: np.ndarray, index, threshold: float) -> list:
    """Groups (as lists of ids, with their weakest joining score) of items whose vectors score at
    least ``threshold`` against each other, largest groups first."""
    return joined(ids, near_pairs(ids, vectors, index, threshold))


def near_pairs(ids: np.ndarray, vectors: np.ndarray, index, threshold: float):
    """(id, other id, score) of every pair scoring at least ``threshold``, each way round."""
    for start in range(0, len(ids), _CHUNK):
        lims, scores, found = index.range_search(vectors[start : start + _CHUNK], threshold)
        for row, query_id in enumerate(ids[start : start + _CHUNK]):
            for score, other in zip(
                scores[lims[row] : lims[row + 1]], found[lims[row] : lims[row + 1]], strict=True
            ):
                yield int(query_id), int(other), float(score)


# Of the shorter video's moments, the share that must match the other's, in order...
SHORTER_MATCHED = 0.8
# ...and of the longer one's (a copy trimmed to half or more of the original is a copy).
LONGER_MATCHED = 0.5


def video_duplicate_groups(sequences: dict[int, np.ndarray], pairs, threshold: float) -> list:
    """Groups of videos (ids, weakest score) that are copies of each other (see the module
    docstring); ``sequences`` holds each video's moment vectors in time order, ``pairs`` the
    videos that share at least one near-identical moment."""
    matching = []
    for a, b in pairs:
        first, second = sorted((sequences[a], sequences[b]), key=len)
        count, weakest = aligned_moments(first, second, threshold)
        if count >= SHORTER_MATCHED * len(first) and count >= LONGER_MATCHED * len(second):
            matching.append((a, b, weakest))
    return joined(list(sequences), matching)


def aligned_moments(a: np.ndarray, b: np.ndarray, threshold: float) -> tuple[int, float]:
    """How many moments of ``a`` and ``b`` match in order (the longest common subsequence,
    a match scoring at least ``threshold``), and the weakest score among them."""
    similar = (a @ b.T) >= threshold
    best = np.zeros((len(a) + 1, len(b) + 1), dtype=np.int32)
    for i in range(len(a)):
        for j in range(len(b)):
            best[i + 1, j + 1] = (
                best[i, j] + 1 if similar[i, j] else max(best[i, j + 1], best[i + 1, j])
            )
    scores = (a @ b.T)[similar]
    return int(best[-1, -1]), float(scores.min()) if scores.size else 0.0


def joined(ids, pairs) -> list:
    """Groups (sorted ids, the weakest score that joined them) of the items that ``pairs``
    (a, b, score) connect, among ``ids``; largest groups first."""
    parent = {int(i): int(i) for i in ids}
    weakest: dict[int, float] = {}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for first, other, score in pairs:
        if first not in parent or other not in parent:
            continue
        a, b = root(first), root(other)
        if a != b:
            parent[b] = a
            weakest[a] = min(weakest.get(a, 1.0), weakest.get(b, 1.0), score)
    groups: dict[int, list[int]] = {}
    for i in parent:
        groups.setdefault(root(i), []).append(i)
    found_groups = [
        (sorted(members), weakest.get(r, 1.0)) for r, members in groups.items() if len(members) > 1
    ]
    return sorted(found_groups, key=lambda g: (-len(g[0]), g[0][0]))
