"""Nearest-neighbour indexes over unit vectors, keyed by item id.

An index is a derived cache of the vectors stored in the database: each file records the
database *generation* it reflects, so the library can tell a current index from a stale one and
rebuild instead of trusting it. Files are written to a temporary name, flushed to disk and
renamed, so a crash leaves either the old file or the new one, never half of one.

The kind of index follows the collection's size, the way autofaiss chooses:

* under :data:`FLAT_LIMIT` vectors, an exact scan (``IndexFlatIP``), a few milliseconds here;
* from there on, an inverted file (``IndexIVFFlat``): k-means cells, and a query scans only the
  cells nearest to it. Vectors are stored uncompressed, so scores are exact and only the recall
  is approximate (``bench/ann_recall.py`` measures it); ``exact=True`` scans every cell.
  The cells are retrained when the collection has grown or shrunk fourfold since training.

The file layout is FAISS's own serialisation followed by a trailer (a JSON header, its length
and :data:`TRAILER`), so FAISS can memory-map the file as it is: a reader opens even a
million-vector library without reading it, and pages in only the cells a query scans. Nor does
a writer read it whole: :meth:`FaissIndex.with_changes` and :meth:`FaissIndex.build_file` write
IVF cells one at a time (:mod:`mmsearch.index.ivf_file`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from mmsearch.index.ivf_file import CellRuns, concat_cells, stored_cells, write_ivf
from mmsearch.temporary import temporary_name

TRAILER = b"MMSEARCH-INDEX 2"
FLAT_LIMIT = 32_768  # an exact scan of 32k vectors of dimension 512 takes ~6 ms on one core
TRAINING_POINTS_PER_CELL = 40  # FAISS asks for at least 39
PROBED_SHARE = 64  # a query scans 1/64 of the cells, and at least MIN_SCANNED vectors
MIN_SCANNED = 8192  # a couple of milliseconds at dimension 512
RETRAIN_FACTOR = 4

Chunks = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]


def cells_for(count: int) -> int:
    """How many IVF cells suit ``count`` vectors (:func:`inverted_file_cells`); 0 means an exact
    flat index."""
    return 0 if count < FLAT_LIMIT else inverted_file_cells(count)


def inverted_file_cells(count: int) -> int:
    """About 4·√count cells, a power of two, with enough points to train each (at least one
    cell): for FAISS's inverted files and pgvector's lists alike."""
    cells = 2 ** round(math.log2(4 * math.sqrt(max(count, 1))))
    while cells > 1 and cells * TRAINING_POINTS_PER_CELL > count:
        cells //= 2
    return cells


class FaissIndex:
    """A FAISS inner-product index whose ids are item ids (see the module docstring).

    Args:
        dim: the vector dimension.
        generation: the database generation the contents reflect.
        index: a FAISS index to wrap (default: an empty flat one).
        trained_on: how many vectors there were when the IVF cells were trained.
        mapped: the index is a read-only memory map of its file (searches only).
    """

    def __init__(self, dim: int, *, generation=0, index=None, trained_on=0, mapped=False):
        import faiss

        self.dim = dim
        self.generation = generation
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.trained_on = trained_on
        self.mapped = mapped

    @classmethod
    def build(cls, dim: int, count: int, chunks: Chunks, *, generation: int = 0) -> FaissIndex:
        """An index of the kind that suits ``count`` vectors, filled from ``chunks()`` (an
        iterable of (ids, vectors) pairs, read twice when the index needs training), in memory.
        :meth:`build_file` builds a large one without holding its vectors."""
        trained = _trained_ivf(dim, count, chunks)
        index = cls(dim, generation=generation, index=trained, trained_on=count if trained else 0)
        for ids, vectors in chunks():
            index.add(ids, vectors)
        return index

    @classmethod
    def build_file(
        cls, path: Path, dim: int, count: int, chunks: Chunks, *, generation: int = 0
    ) -> FaissIndex:
        """:meth:`build`, saved at ``path`` and returned memory-mapped; with IVF cells the
        vectors go to disk cell by cell through scratch files beside ``path``, so memory does
        not grow with ``count``."""
        trained = _trained_ivf(dim, count, chunks)
        if trained is None:
            cls.build(dim, count, chunks, generation=generation).save(path)
        else:
            path = Path(path)
            scratch = temporary_name(path)
            scratch.mkdir()
            try:
                runs = CellRuns(trained.quantizer, trained.nlist, dim, scratch)
                for ids, vectors in chunks():
                    runs.add(ids, vectors)
                cells = (runs.cell(cell) for cell in range(trained.nlist))
                _write_ivf_file(path, trained, cells, generation=generation, trained_on=count)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        return cls.load(path, mapped=True)

    def with_changes(self, path: Path, changes: IndexChanges, generation: int) -> FaissIndex:
        """This index (the one saved at ``path``) with ``changes`` made, saved at ``path``
        stamped ``generation`` and returned memory-mapped. A flat index is small enough to load
        and change; IVF cells are rewritten one at a time from this file's memory map."""
        path = Path(path)
        if not self.cells:
            index = self if not self.mapped else FaissIndex.load(path)
            index.remove(changes.dropped_ids())
            index.add(*changes.added_items())
            index.generation = generation
            index.save(path)
        else:
            runs = CellRuns(self._index.quantizer, self.cells, self.dim)
            runs.add(*changes.added_items())
            stored = stored_cells(self._index, changes.dropped_ids())
            cells = (concat_cells([kept, runs.cell(number)]) for number, kept in enumerate(stored))
            empty = _empty_like(self._index)
            _write_ivf_file(path, empty, cells, generation=generation, trained_on=self.trained_on)
        return FaissIndex.load(path, mapped=True)

    @property
    def cells(self) -> int:
        """The number of IVF cells; 0 for an exact flat index."""
        return getattr(self._index, "nlist", 0)

    @property
    def probes(self) -> int:
        """How many cells an unfiltered query scans; 0 for an exact flat index."""
        return getattr(self._index, "nprobe", 0)

    def needs_rebuild(self) -> bool:
        """Whether the collection has outgrown (or shrunk away from) this kind of index."""
        if not self.cells:
            return len(self) >= FLAT_LIMIT
        return not self.trained_on / RETRAIN_FACTOR <= len(self) <= self.trained_on * RETRAIN_FACTOR

    def __len__(self) -> int:
        return self._index.ntotal

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._writable()
        if len(ids):
            self._index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
            )

    def remove(self, ids: np.ndarray) -> None:
        self._writable()
        if len(ids):
            import faiss

            self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64)))

    def _writable(self) -> None:
        if self.mapped:
            # FAISS aborts the process when a mapped index is changed: refuse in Python first.
            raise RuntimeError("a memory-mapped index is read-only; load it with mapped=False")

    def search(self, queries, k, *, allowed=None, exact=False):
        import faiss

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self)))
        selector = None
        if allowed is not None:
            # Filter inside the search (not top-k then discard): FAISS checks each candidate id.
            selector = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
        if not self.cells:
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
            return self._index.search(queries, k, params=params)
        probes = self.probes
        if allowed is not None and len(allowed):
            # Scan as many allowed candidates as an unfiltered query would: a filter keeping 1%
            # of the library probes 100x the cells (all of them, at most).
            probes = math.ceil(probes * len(self) / len(allowed))
        if exact:
            probes = self.cells
        params = faiss.SearchParametersIVF(sel=selector, nprobe=min(probes, self.cells))
        return self._index.search(queries, k, params=params)

    def range_search(self, queries: np.ndarray, threshold: float):
        """Every item scoring at least ``threshold`` for each query: FAISS's (lims, scores, ids);
        the hits of query i are ``scores[lims[i]:lims[i+1]]``, ``ids[lims[i]:lims[i+1]]``.
        With IVF cells, near-identical vectors share a cell, so the default probes find them."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        return self._index.range_search(queries, float(threshold))

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of everything in the index, in storage order."""
        import faiss

        if not len(self):
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        if not self.cells:
            ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            return ids, self._index.index.reconstruct_n(0, len(self))
        from faiss.contrib.inspect_tools import get_invlist

        lists = [get_invlist(self._index.invlists, cell) for cell in range(self.cells)]
        ids = np.concatenate([ids for ids, _ in lists]).astype(np.int64)
        codes = np.concatenate([codes for _, codes in lists])
        return ids, codes.view(np.float32).reshape(len(ids), self.dim)

    def save(self, path: Path) -> None:
        import faiss

        header = _trailer(self.generation, self.dim, len(self), self.trained_on)

        def write(tmp: str) -> None:
            faiss.write_index(self._index, tmp)  # straight to disk: no copy of the vectors
            with open(tmp, "ab") as f:
                f.write(header)

        _atomic_write(Path(path), write)

    @staticmethod
    def read_header(path: Path) -> dict | None:
        """The header of a saved index (generation, dim, count, trained_on) without loading
        the vectors; None when the file is missing, truncated or not an mmsearch index."""
        try:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                if size < len(TRAILER) + 4:
                    return None
                f.seek(size - len(TRAILER) - 4)
                (length,) = struct.unpack("<I", f.read(4))
                if f.read() != TRAILER or length > size - len(TRAILER) - 4:
                    return None
                f.seek(size - len(TRAILER) - 4 - length)
                return json.loads(f.read(length))
        except (OSError, ValueError):
            return None

    @classmethod
    def load(cls, path: Path, *, mapped: bool = False) -> FaissIndex | None:
        """The index saved at ``path``, or None when it is missing or unreadable (then rebuild).
        ``mapped`` memory-maps it read-only instead of reading it: for searching only."""
        import faiss

        header = cls.read_header(path)
        if header is None:
            return None
        flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mapped else 0
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError:
            return None
        if index.ntotal != header.get("count") or index.d != header.get("dim"):
            return None
        return cls(
            header["dim"],
            generation=int(header["generation"]),
            index=index,
            trained_on=int(header.get("trained_on", 0)),
            mapped=mapped,
        )


class IndexChanges:
    """Additions and removals made to the database and not yet written to the index file.

    An added id replaces any stored vector of that id; a removed id cancels its pending
    addition. ``len()`` counts the ids involved, which bounds the memory held.
    """

    def __init__(self) -> None:
        self._added: dict[int, np.ndarray] = {}
        self._dropped: set[int] = set()

    def __len__(self) -> int:
        return len(self._dropped)  # every added id is dropped from the stored ones too

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = [int(i) for i in ids]
        self._dropped.update(ids)
        self._added.update(zip(ids, np.asarray(vectors, dtype=np.float32), strict=True))

    def remove(self, ids: np.ndarray) -> None:
        ids = [int(i) for i in ids]
        self._dropped.update(ids)
        for i in ids:
            self._added.pop(i, None)

    def dropped_ids(self) -> np.ndarray:
        """Stored ids to leave out (removed or replaced), sorted."""
        return np.array(sorted(self._dropped), dtype=np.int64)

    def added_items(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) to add."""
        if not self._added:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        ids = np.fromiter(self._added, dtype=np.int64, count=len(self._added))
        return ids, np.stack(list(self._added.values()))


def _trained_ivf(dim: int, count: int, chunks: Chunks):
    """An empty ``IndexIVFFlat`` trained for ``count`` vectors on a sample of ``chunks()``,
    or None when ``count`` calls for an exact flat index."""
    import faiss

    cells = cells_for(count)
    if not cells:
        return None
    # Every step-th vector, so the sample spans the whole collection, not its oldest part.
    step = max(1, count // (cells * TRAINING_POINTS_PER_CELL))
    sample = np.concatenate(
        [vectors[(-offset) % step :: step] for offset, (_, vectors) in _offsets(chunks())]
    )
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, cells, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.spherical = True  # centroids on the unit sphere, like the vectors
    ivf.cp.niter = 10
    ivf.train(np.ascontiguousarray(sample, dtype=np.float32))
    ivf.nprobe = min(cells, max(cells // PROBED_SHARE, MIN_SCANNED * cells // count))
    return ivf


def _empty_like(ivf):
    """An empty ``IndexIVFFlat`` with the cells (a copy of the centroids) and probes of ``ivf``."""
    import faiss

    empty = faiss.IndexIVFFlat(faiss.clone_index(ivf.quantizer), ivf.d, ivf.nlist, ivf.metric_type)
    empty.nprobe = ivf.nprobe
    return empty


def _trailer(generation: int, dim: int, count: int, trained_on: int) -> bytes:
    """What follows FAISS's serialisation in an mmsearch index file (see :meth:`read_header`)."""
    header = json.dumps(
        {"generation": generation, "dim": dim, "count": count, "trained_on": trained_on}
    ).encode()
    return header + struct.pack("<I", len(header)) + TRAILER


def _write_ivf_file(path: Path, empty, cells, *, generation: int, trained_on: int) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            count = write_ivf(f, empty, cells)
            f.write(_trailer(generation, empty.d, count, trained_on))

    _atomic_write(path, write)


def _offsets(chunks: Iterable[tuple[np.ndarray, np.ndarray]]):
    """(offset of the chunk's first vector, chunk) pairs."""
    offset = 0
    for chunk in chunks:
        yield offset, chunk
        offset += len(chunk[0])


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    # Not mkstemp: its files are private (0600), and a library read by another user (a web
    # server's) needs the index as readable as the database, which the umask decides.
    tmp = str(temporary_name(path))
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
