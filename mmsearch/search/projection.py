"""A 2-D picture of an embedding space: principal component analysis of the image vectors.

PCA keeps the two directions along which the library varies most, so the main groupings of a
collection (subjects, styles, colours) spread out on the page. It is deterministic and needs no
extra dependency; UMAP would separate fine clusters better at the cost of one.
"""

from __future__ import annotations

import numpy as np


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """N x 2 positions in [0, 1] (the first two principal components, scaled to the unit square
    with a margin); one vector maps to the centre."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if len(vectors) < 2:
        return np.full((len(vectors), 2), 0.5)
    centred = vectors - vectors.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    points = centred @ components[:2].T
    if points.shape[1] < 2:
        points = np.hstack([points, np.zeros((len(points), 1))])
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.where(high - low > 1e-12, high - low, 1.0)
    return 0.05 + 0.9 * (points - low) / span
