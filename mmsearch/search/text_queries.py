"""How a text query becomes a vector: the one place that decides, in this order.

1. **The query cache** (:mod:`mmsearch.storage.query_cache`): a query asked before costs a
   database read, nothing else.
2. **The model's encoder, if this process already loaded it** (``mmsearch serve`` after an image
   query, ``tag``, indexing): it is warm, and the exported tower would only add a second copy.
3. **The exported torch-free text tower** (:mod:`mmsearch.encoders.numpy_text_tower`), if the
   library holds one for exactly these weights: a one-shot ``mmsearch search`` then never imports
   torch. ``mmsearch index`` exports it after each run where numpy reproduces the model.
4. **The encoder**, loaded now: only its text tower where it can be loaded alone, at the
   precision that CPU runs fastest within the tested agreement
   (:func:`mmsearch.encoders.precision.text_precision`). A towers model's text tower is numpy
   already (:mod:`mmsearch.encoders.towers_encoder`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmsearch.encoders.numpy_text_tower import NumpyTextTower
from mmsearch.library_model import LibraryModel
from mmsearch.storage.query_cache import QueryCache

TEXT_TOWER_DIR = "text_tower"  # in the library folder: the exported text tower


class TextQueries:
    """Query texts → vectors for one library (see the module docstring for the order)."""

    def __init__(self, library_dir: Path, cache: QueryCache, model: LibraryModel):
        self._folder = library_dir / TEXT_TOWER_DIR
        self._cache = cache
        self._model = model
        self._exported: NumpyTextTower | None = None
        self._looked_for_exported = False

    def vectors(self, texts: list[str]) -> list[np.ndarray]:
        """One unit vector per text, in order (each distinct text encoded once, then cached)."""
        cached = self._cache.get(texts)
        missing = sorted({t for t in texts if t not in cached})
        if missing:
            encoded = dict(zip(missing, self.encode(missing), strict=True))
            cached.update(encoded)
            self._cache.add(encoded)
        return [cached[t] for t in texts]

    def encode(self, texts: list[str]) -> np.ndarray:
        """Texts → vectors, bypassing the cache (steps 2 to 4)."""
        if not self._model.encoder_loaded:
            exported = self._exported_tower()
            if exported is not None:
                return exported.encode(texts)
        return self._model.encoder.encode_texts(texts)

    def _exported_tower(self) -> NumpyTextTower | None:
        stored = self._model.stored
        if not self._looked_for_exported and stored:
            self._exported = NumpyTextTower.open(self._folder, stored["weights"])
            self._looked_for_exported = True
        return self._exported

    def prepare(self) -> bool:
        """Export the text tower for step 3 unless the library has it; returns whether it has
        it. A model whose text tower numpy does not reproduce keeps torch."""
        stored = self._model.stored
        if not stored:
            return False
        if NumpyTextTower.open(self._folder, stored["weights"]) is not None:
            return True
        try:
            return self._model.encoder.export_text_tower(self._folder, stored["weights"])
        except OSError:
            return False  # a read-only or full library still answers, with torch
