"""Bytes read and wall time of a first ``mmsearch index`` of a folder, and of the rescans after
the folder is moved (renamed on the same disk) and after it is copied to another disk.

    python bench/first_scan.py /tmp/scanbench/dng /tmp/scanbench/jpeg [--model clipart-mini]

Each folder is copied to a scratch place, indexed into a new library (one process,
``--workers 0``, so that the kernel's count of bytes read, ``rchar`` in /proc/self/io, sees
every read: the hashing, the decoding, the database), then renamed and indexed again, then
copied elsewhere (new inodes, as a move to another disk makes) with the original deleted, and
indexed again. The model is loaded before anything is counted. A NAS pays for every byte read
over its network, cached or not, which is why bytes read are the figure to compare; run the
same command against another checkout (``PYTHONPATH=that/checkout``) for its figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from indexer import index_paths
from mmsearch import open_library


def _bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/self/io")


def _measured(library, folder: Path) -> dict:
    before, start = _bytes_read(), time.perf_counter()
    summary = index_paths(library, [folder], workers=0)
    return {
        "seconds": round(time.perf_counter() - start, 2),
        "mb_read": round((_bytes_read() - before) / 1e6, 1),
        "added": summary.added,
        "moved": getattr(summary, "moved", 0),  # absent before renames were recognised
        "reused": summary.reused,
        "removed": summary.removed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--model", default="clipart-mini")
    args = parser.parse_args()
    report = {}
    for folder in args.folders:
        files = [p for p in folder.rglob("*") if p.is_file()]
        with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
            root = Path(scratch)
            photos = root / "photos" / "shoot"
            shutil.copytree(folder, photos)
            with open_library(root / "library", model=args.model) as library:
                library.encoder  # noqa: B018 - loaded here, before any byte is counted
                first = _measured(library, root / "photos")
                photos.rename(root / "photos" / "renamed")  # a move on the same disk
                renamed = _measured(library, root / "photos")
                shutil.copytree(root / "photos" / "renamed", root / "photos" / "copied")
                shutil.rmtree(root / "photos" / "renamed")  # a move to another disk
                copied = _measured(library, root / "photos")
        report[str(folder)] = {
            "files": len(files),
            "mb_on_disk": round(sum(p.stat().st_size for p in files) / 1e6, 1),
            "first_scan": first,
            "after_a_rename": renamed,
            "after_a_move_to_another_disk": copied,
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
