"""``mmsearch duplicates``: groups of near-identical images across a whole library.

Every stored vector is matched against the image index with a FAISS range search (all items
scoring at least the threshold), in chunks so memory stays flat; pairs are joined into groups with
a union-find. Exact copies score 1.0; how high re-encoded, resized or lightly edited copies of
one photo score depends on the model, so the default threshold is the model's own
(``ModelSpec.duplicate_threshold``, measured by ``bench/duplicate_threshold.py``).
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
    parent = {int(i): int(i) for i in ids}
    weakest: dict[int, float] = {}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(ids), _CHUNK):
        lims, scores, found = index.range_search(vectors[start : start + _CHUNK], threshold)
        for row, query_id in enumerate(ids[start : start + _CHUNK]):
            for score, other in zip(
                scores[lims[row] : lims[row + 1]], found[lims[row] : lims[row + 1]], strict=True
            ):
                if int(other) not in parent:
                    continue
                a, b = root(int(query_id)), root(int(other))
                if a != b:
                    parent[b] = a
                    weakest[a] = min(weakest.get(a, 1.0), weakest.get(b, 1.0), float(score))
    groups: dict[int, list[int]] = {}
    for i in parent:
        groups.setdefault(root(i), []).append(i)
    found_groups = [
        (sorted(members), weakest.get(r, 1.0)) for r, members in groups.items() if len(members) > 1
    ]
    return sorted(found_groups, key=lambda g: (-len(g[0]), g[0][0]))
