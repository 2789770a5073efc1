"""Writing an IVF index file cell by cell, so its vectors never all sit in memory at once.

A writer that loads an index to change it holds every vector (1 KB each at dimension 256), and
so grows with the library. Instead, :func:`write_ivf` streams FAISS's own serialisation of an
``IndexIVFFlat`` to disk one cell at a time, from any source that yields a cell's (ids, vectors):
the cells of the current file (memory-mapped: page cache, not process memory) less what was
removed, plus what was added, grouped by cell in :class:`CellRuns`. The file is byte for byte
what ``faiss.write_index`` writes for the same index (a test checks it), so readers map it as
before.

The layout written, after the index's own header (whose ``ntotal`` is patched at the end)::

    b"ilar" nlist:u64 code_size:u64 b"full" nlist:u64 sizes:u64[nlist]
    then for each non-empty cell: codes (size x code_size bytes), ids (size x i64)
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

_EMPTY_LISTS_SIZE = 32  # b"ilar" nlist code_size b"sprs" 0: how FAISS writes empty lists
_NTOTAL_AT = 8  # after the fourcc and the int32 dimension


def write_ivf(file: BinaryIO, trained, cells: Iterable[tuple[np.ndarray, np.ndarray]]) -> int:
    """Write ``trained`` (an empty, trained ``IndexIVFFlat``) filled with the c-th (ids, vectors)
    pair of ``cells`` in cell c, at the current position of ``file``; returns the vector count."""
    import faiss

    empty = faiss.serialize_index(trained).tobytes()
    lists_at = len(empty) - _EMPTY_LISTS_SIZE
    if trained.ntotal or empty[lists_at : lists_at + 4] != b"ilar":
        raise ValueError("write_ivf needs an empty IndexIVFFlat with FAISS's array lists")
    nlist, code_size = trained.nlist, trained.code_size
    start = file.tell()
    file.write(empty[:lists_at])
    file.write(b"ilar" + struct.pack("<QQ", nlist, code_size) + b"full")
    file.write(struct.pack("<Q", nlist))
    sizes_at = file.tell()
    file.write(bytes(8 * nlist))  # the sizes, filled in once known
    sizes = np.zeros(nlist, dtype=np.uint64)
    for cell, (ids, vectors) in enumerate(cells):
        codes = np.ascontiguousarray(vectors, dtype=np.float32)
        if codes.nbytes != len(ids) * code_size:
            raise ValueError(f"cell {cell}: {len(ids)} ids but {codes.nbytes} bytes of vectors")
        file.write(codes.tobytes())
        file.write(np.ascontiguousarray(ids, dtype="<i8").tobytes())
        sizes[cell] = len(ids)
    if cell != nlist - 1:
        raise ValueError(f"{cell + 1} cells given for an index of {nlist}")
    end = file.tell()
    file.seek(start + _NTOTAL_AT)
    file.write(struct.pack("<q", int(sizes.sum())))
    file.seek(sizes_at)
    file.write(sizes.astype("<u8").tobytes())
    file.seek(end)
    return int(sizes.sum())


class CellRuns:
    """Vectors grouped by the IVF cell they fall in, added a chunk at a time.

    Each chunk is sorted by cell (stably, so a cell keeps the order vectors were added in, as
    FAISS does) and kept as one run, in memory or, with ``scratch``, appended to two files there
    and read back memory-mapped. :meth:`cell` gathers a cell from every run.
    """

    def __init__(self, quantizer, nlist: int, dim: int, scratch: Path | None = None):
        self._quantizer = quantizer
        self._nlist = nlist
        self._dim = dim
        self._scratch = scratch
        self._runs: list[tuple[int, np.ndarray]] = []  # (offset of the run, its cell bounds)
        self._arrays: list[tuple[np.ndarray, np.ndarray]] = []  # in memory: (ids, vectors)
        self._count = 0
        self._mapped: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return self._count

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        cells = self._quantizer.assign(vectors, 1).ravel()
        order = np.argsort(cells, kind="stable")
        ids = np.asarray(ids, dtype=np.int64)[order]
        vectors = vectors[order]
        bounds = np.searchsorted(cells[order], np.arange(self._nlist + 1))
        self._runs.append((self._count, bounds))
        self._count += len(ids)
        if self._scratch is None:
            self._arrays.append((ids, vectors))
        else:
            for name, array in (("ids", ids), ("vectors", vectors)):
                with open(self._scratch / name, "ab") as f:
                    f.write(array.tobytes())

    def cell(self, cell: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the cell, in the order they were added."""
        parts = []
        for number, (_, bounds) in enumerate(self._runs):
            start, stop = bounds[cell], bounds[cell + 1]
            if start < stop:
                ids, vectors = self._run(number)
                parts.append((ids[start:stop], vectors[start:stop]))
        if not parts:
            return np.zeros(0, np.int64), np.zeros((0, self._dim), np.float32)
        return concat_cells(parts)

    def _run(self, number: int) -> tuple[np.ndarray, np.ndarray]:
        """The run's (ids, vectors), sorted by cell."""
        if self._scratch is None:
            return self._arrays[number]
        if self._mapped is None:
            self._mapped = (
                np.memmap(self._scratch / "ids", np.int64, "r", shape=(self._count,)),
                np.memmap(
                    self._scratch / "vectors", np.float32, "r", shape=(self._count, self._dim)
                ),
            )
        start = self._runs[number][0]
        stop = start + int(self._runs[number][1][-1])
        return self._mapped[0][start:stop], self._mapped[1][start:stop]


def concat_cells(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) pairs joined into one."""
    return np.concatenate([i for i, _ in parts]), np.concatenate([v for _, v in parts])


def stored_cells(index, dropped: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Each cell of an ``IndexIVFFlat`` (read from its memory map when it is one) as (ids,
    vectors), less the ids in ``dropped`` (sorted)."""
    from faiss.contrib.inspect_tools import get_invlist

    for cell in range(index.nlist):
        ids, codes = get_invlist(index.invlists, cell)
        vectors = codes.view(np.float32).reshape(len(ids), index.d)
        if len(dropped) and len(ids):
            at = np.minimum(np.searchsorted(dropped, ids), len(dropped) - 1)
            keep = dropped[at] != ids
            ids, vectors = ids[keep], vectors[keep]
        yield ids.astype(np.int64), vectors
