"""Nearest-neighbour indexes over unit vectors, keyed by item id.

An index is a derived cache of the vectors stored in the database: each file records the
database *generation* it reflects, so the library can tell a current index from a stale one and
rebuild instead of trusting it. Files are written to a temporary name, flushed to disk and
renamed, so a crash leaves either the old file or the new one, never half of one.

The file layout is a magic line, one JSON header line, then FAISS's own serialisation.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Protocol

import numpy as np

MAGIC = b"MMSEARCH-INDEX 1\n"


class VectorIndex(Protocol):
    """What the library needs of a vector index."""

    generation: int

    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...

    def search(
        self, queries: np.ndarray, k: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: (scores, ids), each len(queries) x k; missing hits have id -1."""
        ...

    def save(self, path: Path) -> None: ...


class FaissIndex:
    """Exact inner-product search (``IndexIDMap2`` over ``IndexFlatIP``); ids are item ids."""

    def __init__(self, dim: int, *, generation: int = 0, index=None):
        import faiss

        self.dim = dim
        self.generation = generation
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def __len__(self) -> int:
        return self._index.ntotal

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
            )

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            import faiss

            self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64)))

    def search(self, queries, k, *, allowed=None):
        import faiss

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self)))
        params = None
        if allowed is not None:
            # Filter inside the search (not top-k then discard): FAISS checks each candidate id.
            params = faiss.SearchParameters(
                sel=faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
            )
        scores, ids = self._index.search(queries, k, params=params)
        return scores, ids

    def range_search(self, queries: np.ndarray, threshold: float):
        """Every item scoring at least ``threshold`` for each query: FAISS's (lims, scores, ids);
        the hits of query i are ``scores[lims[i]:lims[i+1]]``, ``ids[lims[i]:lims[i+1]]``."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        return self._index.range_search(queries, float(threshold))

    def ids(self) -> np.ndarray:
        import faiss

        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of everything in the index, in storage order."""
        vectors = (
            self._index.index.reconstruct_n(0, len(self)) if len(self) else np.zeros((0, self.dim))
        )
        return self.ids(), vectors

    def save(self, path: Path) -> None:
        import faiss

        header = json.dumps(
            {"generation": self.generation, "dim": self.dim, "count": len(self)}
        ).encode()
        payload = faiss.serialize_index(self._index)
        _atomic_write(path, [MAGIC, header, b"\n", memoryview(payload)])

    @staticmethod
    def read_header(path: Path) -> dict | None:
        """The header of a saved index (generation, dim, count) without loading the vectors."""
        try:
            with open(path, "rb") as f:
                if f.read(len(MAGIC)) != MAGIC:
                    return None
                return json.loads(f.readline())
        except (OSError, ValueError):
            return None

    @classmethod
    def load(cls, path: Path) -> FaissIndex | None:
        """The index saved at ``path``, or None when it is missing or unreadable (then rebuild)."""
        import faiss

        try:
            data = Path(path).read_bytes()
        except OSError:
            return None
        if not data.startswith(MAGIC):
            return None
        header_end = data.find(b"\n", len(MAGIC))
        try:
            header = json.loads(data[len(MAGIC) : header_end])
            index = faiss.deserialize_index(np.frombuffer(data, np.uint8, offset=header_end + 1))
        except (ValueError, RuntimeError):
            return None
        if index.ntotal != header.get("count") or index.d != header.get("dim"):
            return None
        return cls(header["dim"], generation=int(header["generation"]), index=index)


def _atomic_write(path: Path, chunks) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
