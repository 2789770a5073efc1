"""Where a library lives: ``--library DIR``, else ``$MMSEARCH_LIBRARY``, else the user data dir."""

from __future__ import annotations

import json
import os
from pathlib import Path

ENV_VAR = "MMSEARCH_LIBRARY"
DB_FILE = "library.db"
CONFIG_FILE = "library.json"  # settings that must be known before the database is opened


def default_library_dir() -> Path:
    """``$XDG_DATA_HOME/mmsearch`` on Linux (``~/.local/share/mmsearch``), the OS norm elsewhere."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("mmsearch", appauthor=False))


def resolve_library_dir(path: str | os.PathLike[str] | None = None) -> Path:
    if path is not None:
        return Path(path).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return default_library_dir()


def read_config(library_dir: Path) -> dict:
    try:
        return json.loads((library_dir / CONFIG_FILE).read_text())
    except FileNotFoundError:
        return {}


def write_config(library_dir: Path, config: dict) -> None:
    (library_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def sqlite_url(library_dir: Path, *, read_only: bool = False) -> str:
    """The library's own SQLite database; ``read_only`` opens it without writing a byte.

    Read-only, a WAL database needs its ``-shm`` file, which a read-only folder cannot get; with
    no ``-wal`` file either, nobody is writing it through this folder, and SQLite may take the
    file as immutable (no locks, no ``-shm``). With a ``-wal`` file, a writer may be at work
    elsewhere: then plain read-only mode, which reads the writer's ``-shm``.
    """
    path = (library_dir / DB_FILE).resolve()
    if not read_only:
        return f"sqlite:///{path}"
    immutable = "" if Path(f"{path}-wal").exists() else "&immutable=1"
    return f"sqlite:///file:{path}?mode=ro{immutable}&uri=true"


def is_read_only(library_dir: Path) -> bool:
    """Whether the library's folder or database file cannot be written (a read-only mount, a
    backup, another user's library)."""
    db = library_dir / DB_FILE
    return db.is_file() and not (os.access(library_dir, os.W_OK) and os.access(db, os.W_OK))
