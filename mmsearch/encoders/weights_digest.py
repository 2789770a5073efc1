"""SHA-256 of local weight files, hashed once per file version.

A library records its model's weights by checksum, and every open compares it: hashing a 600 MB
ViT-B/32 checkpoint on each one-shot ``mmsearch search`` would cost about a second. The digest
is kept by path, size and modification time, in memory and in a small JSON file in the user's
cache folder, so a file is hashed again only when it changes (or the cache cannot be written,
which is never an error).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

_CACHE_FILE = "weights-sha256.json"
_known: dict[str, tuple[int, int, str]] = {}  # path → (size, mtime_ns, hex digest)


def file_sha256(path: Path) -> str:
    """The file's SHA-256 (hex), from the cache when the file is unchanged since it was hashed."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    key = (stat.st_size, stat.st_mtime_ns)
    if not _known:
        _known.update(_read_cache())
    entry = _known.get(real)
    if entry is not None and tuple(entry[:2]) == key:
        return entry[2]
    digest = hashlib.sha256()
    with open(real, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    _known[real] = (*key, digest.hexdigest())
    _write_cache()
    return digest.hexdigest()


def _cache_path() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("MMSEARCH_CACHE_DIR") or user_cache_dir("mmsearch")) / _CACHE_FILE


def _read_cache() -> dict[str, tuple[int, int, str]]:
    try:
        entries = json.loads(_cache_path().read_text())
        return {path: (int(s), int(m), str(d)) for path, (s, m, d) in entries.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}  # none yet, or unreadable: hash again


def _write_cache() -> None:
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_known))
        tmp.replace(path)
    except OSError:
        pass  # a read-only home: hashing again next time is the only cost
