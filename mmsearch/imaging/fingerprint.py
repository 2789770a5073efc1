"""Content fingerprints: what recognises the same picture under another name or path.

Kept apart from decoding so that the store and the indexer can hash without importing a decoder.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterable

import numpy as np

# Content hashes: 128 bits of BLAKE3, about 7 times as fast as BLAKE2b here (a 25 MB RAW file in
# 5 ms instead of 40, as long as decoding its preview). Libraries made before keep BLAKE2b-128,
# the hash their rows hold (the library's "content_hash" setting says which).
CONTENT_HASH = "blake3"
_HASHES = {
    "blake3": lambda: _blake3()(max_threads=1),  # the decoder workers already use every core
    "blake2b": lambda: hashlib.blake2b(digest_size=16),
}


def content_hash(path: str | os.PathLike[str], algorithm: str = CONTENT_HASH) -> str:
    """128 bits of a file's hash, hex: what recognises the same picture under another name."""
    with open(path, "rb") as file:
        digest = hashlib.file_digest(file, _HASHES[algorithm])
    return digest.hexdigest(16) if algorithm == "blake3" else digest.hexdigest()


@functools.cache
def _blake3():
    from blake3 import blake3

    return blake3


class KnownContent:
    """A set of content hashes kept as the sorted first 64 bits of each: 8 bytes an image
    instead of about 100 for a set of strings, in the indexer and in each decoder worker.
    Two different contents sharing 64 bits are possible but rare, so a match is a strong hint,
    not proof: whoever acts on it compares the full hash (the indexer decodes the file after
    all when the library holds no such content)."""

    def __init__(self, hashes: Iterable[str] = ()):
        keys = np.fromiter((int(h[:16], 16) for h in hashes), dtype=np.uint64)
        self._keys = np.unique(keys)
        self._sizes: np.ndarray | None = None  # every size is worth hashing

    def hashing_only(self, sizes: Iterable[int]) -> KnownContent:
        """These hashes, with only files of these sizes worth hashing (a file of any other
        size can be no copy of a stored image, nor of another file of the run)."""
        known = KnownContent()
        known._keys = self._keys
        known._sizes = np.unique(np.fromiter(sizes, dtype=np.int64))
        return known

    def worth_hashing(self, size: int) -> bool:
        if self._sizes is None:
            return True
        at = int(np.searchsorted(self._sizes, size))
        return at < len(self._sizes) and self._sizes[at] == size

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, digest: object) -> bool:
        if not isinstance(digest, str) or not len(self._keys):
            return False
        key = np.uint64(int(digest[:16], 16))
        at = int(np.searchsorted(self._keys, key))
        return at < len(self._keys) and self._keys[at] == key
