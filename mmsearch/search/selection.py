"""The images a filtered search may return, in the form each vector index takes them.

PostgreSQL's index (pgvector) is given the filter itself, conditions on ``images`` that go into
the search statement's ``WHERE``: the database evaluates them as it walks its index, and no id
travels to this process and back. A FAISS index is given the ids, read once from the database.
"""

from __future__ import annotations

import numpy as np

from mmsearch.errors import InputError


class Selection:
    """The images that meet ``where`` (an ImageFilter), less the ids in ``exclude`` (the query
    image's own copies)."""

    def __init__(self, images, where, exclude: set[int]):
        self._images = images
        self._where = where
        self._exclude = frozenset(exclude)
        self._ids: np.ndarray | None = None

    def ids(self) -> np.ndarray:
        """The selected ids (read once).

        Raises:
            InputError: no image meets the filter.
        """
        if self._ids is None:
            found = self._images.ids_where(self._where.conditions())
            ids = [i for i in found if i not in self._exclude]
            if not ids:
                raise InputError(
                    f"no image in the library matches the filters ({self._where.describe()})"
                )
            self._ids = np.array(ids, dtype=np.int64)
        return self._ids

    def restriction(self, index) -> dict:
        """The keyword arguments that restrict ``index.search`` to the selection."""
        if getattr(index, "filters_in_sql", False):
            return {"conditions": self._where.conditions(), "exclude": self._exclude}
        return {"allowed": self.ids()}
