"""One ranking from several: reciprocal rank fusion (Cormack, Clarke and Büttcher, 2009).

An image's fused score is the sum over rankings of 1 / (constant + its rank there), so an image
near the top of either the semantic (CLIP) or the keyword ranking rises, and one in both rises
most. It needs no calibration between cosine similarities and BM25 scores, which mean different
things on different scales.
"""

from __future__ import annotations

from collections.abc import Sequence

MODES = ("hybrid", "semantic", "keyword")
DEFAULT_MODE = "hybrid"  # measured: BENCHMARKS.md, "Keyword and hybrid search"
RRF_CONSTANT = 60  # measured there too; 60 is the paper's


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], constant: int = RRF_CONSTANT
) -> list[int]:
    """Ids of all rankings, best fused first (ties: first seen first)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (constant + rank)
    return sorted(scores, key=lambda item: -scores[item])
