"""Temporary files and folders written beside what they become, and removing what a killed
writer left of them.

Files that must appear whole (index files, the exported text tower) are written under a
temporary name and renamed. A writer killed mid-write (``kill -9``, a power cut) leaves that
temporary behind, and at a million images it is 2 GB. The name carries the writer's process id,
so a later writer can tell a leftover (its process is gone) from another process's work in
progress, and remove it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path

_NAME = re.compile(r"^.+\.(\d+)-[0-9a-f]{16}\.tmp$")


def temporary_name(path: Path) -> Path:
    """A fresh name beside ``path`` for a file or folder that will become it. Created by the
    caller, so it gets the permissions the umask gives (not mkstemp's private 0600)."""
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(8)}.tmp")


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove the temporaries in ``folder`` whose writing process no longer exists; returns
    what was removed."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _NAME.match(entry.name)
        if match is None or int(match.group(1)) == os.getpid() or _alive(int(match.group(1))):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue  # read-only, or removed by another process meanwhile
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
